"""``edgekit devices list | show``: the device catalog, every number with its provenance."""

from __future__ import annotations

import typer

from .lazy import LazyGroup
from ._common import JSON_OPT, console, emit_json

app = typer.Typer(cls=LazyGroup, rich_markup_mode=None, help="List the device catalog and show one profile with the provenance of "
                       "every number.", no_args_is_help=True)

_STYLE = {"published": "green", "measured": "cyan", "estimated": "yellow"}


def _g(x: float) -> str:
    return f"{x:g}"


@app.command("list")
def list_cmd(json_out: bool = JSON_OPT) -> None:
    """List the known devices (user overrides first, then the packaged catalog)."""
    from ..core.devices import list_devices, user_dir

    profiles = list_devices()
    if json_out:
        emit_json({"schema": "edgekit.devices/1", "user_dir": str(user_dir()),
                   "devices": [p.summary() for p in profiles]})
        return
    from rich.table import Table

    table = Table(title="edgekit devices",
                  caption=f"budget: latency / memory / size, precision on accelerator. "
                          f"Details: edgekit devices show NAME. User overrides: {user_dir()}")
    for col in ("name", "kind", "CPU", "GPU", "memory", "default budget"):
        table.add_column(col, no_wrap=col in ("name", "kind", "memory"))
    for p in profiles:
        s = p.summary()
        b = s["default_budget"]
        fastest = max(c.max_ghz.value for c in p.cpu.clusters)
        name = p.name + (" (user)" if p.origin == "user" else "")
        table.add_row(name, p.kind, f"{s['cores']:g} cores, up to {fastest:g} GHz",
                      s["gpu"] or "-", f"{_g(s['memory_gb'])} GB",
                      f"{_g(b['latency_ms'])} ms / {_g(b['memory_mb'])} MB / {_g(b['size_mb'])} MB, "
                      f"{b['precision']} on {b['accelerator']}")
    console.print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Device name, e.g. pixel7 (see `devices list`)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Show every fact, anchor and cost coefficient of a device with its provenance."""
    from ..core.devices import load_device, profile_doc

    profile = load_device(name)
    if json_out:
        emit_json(profile_doc(profile))
        return
    from rich.table import Table
    from rich.text import Text

    where = "user override" if profile.origin == "user" else "packaged catalog"
    console.print(Text.assemble((f"{profile.display_name}", "bold"), f" ({profile.name}, "
                                f"{profile.kind}, {profile.soc})\nfrom {profile.path} ({where})"))
    console.print(f"CPU: {profile.cpu.summary()}; ISA: {', '.join(profile.cpu.isa) or '-'}")
    if profile.gpu:
        console.print(f"GPU: {profile.gpu.name} ({', '.join(profile.gpu.api)})")
    console.print(f"runtimes: {', '.join(profile.runtimes)}")
    if profile.notes:
        console.print(f"note: {profile.notes}", style="dim")

    # the sources as numbered notes under the table: a column of citations would squeeze
    # the table into a few characters per line on an 80-column terminal
    table = Table(title="numbers and their provenance", show_lines=False)
    table.add_column("item", overflow="fold")
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("provenance", no_wrap=True)
    table.add_column("source", no_wrap=True)
    refs: dict[str, int] = {}
    for path, num in profile.numbers():
        if path.startswith("anchors."):
            continue
        prov = num.prov
        text = prov.text() + (f" (note: {num.note})" if num.note else "")
        ref = refs.setdefault(text, len(refs) + 1)
        table.add_row(path.replace(".coefficients.", "."), _g(num.value),
                      Text(prov.kind, style=_STYLE[prov.kind]), f"[{ref}]")
    console.print(table)
    console.print("sources:")
    for text, ref in refs.items():
        console.print(Text.assemble((f"[{ref}] ", "bold"), text), soft_wrap=False)

    if profile.anchors:
        at = Table(title="anchors: published figures (on this device or a relative)")
        for col in ("model", "precision", "runtime", "threads", "measured on", "published ms",
                    "top-1 %", "scale", "expected here ms"):
            at.add_column(col, justify="right" if col not in ("model", "runtime", "measured on",
                                                              "precision") else "left")
        for a in profile.anchors:
            scale = a.scale_to_device
            at.add_row(a.model, a.precision, a.runtime, str(a.threads or "-"), a.measured_on,
                       Text(_g(a.latency_ms.value), style=_STYLE[a.latency_ms.prov.kind]),
                       _g(a.accuracy_top1.value) if a.accuracy_top1 else "-",
                       Text(_g(scale.value), style=_STYLE[scale.prov.kind]) if scale else "-",
                       Text(f"{a.expected_ms:.1f} (estimated)", style="yellow")
                       if a.expected_ms is not None else "-")
        console.print(at)
    else:
        console.print("anchors: none (no published latency figure for this device or a "
                      "relative in the catalog)")
    c = profile.provenance_counts()
    line = Text.assemble(
        (f"{c['published']} published", _STYLE["published"]), ", ",
        (f"{c['estimated']} estimated", _STYLE["estimated"]), ", ",
        (f"{c['measured']} measured", _STYLE["measured"]))
    if c["estimated"]:
        line.append("  (estimates are placeholders until `edgekit calibrate` measures them)")
    console.print(line)
