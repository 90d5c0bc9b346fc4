"""What ``edgekit inspect MODEL`` prints (the command is made from the stage's options model:
``edgekit.stages.evaluate``)."""

from __future__ import annotations

from .._common import console, fmt_bytes, fmt_count


def render(result) -> None:
    """The model's facts as a table, its layers with --layers, and each check's verdict."""
    from ...core.preprocessing import describe

    info = result.to_json()
    model, prep, layers = info["path"], info["preprocessing"], result.show_layers
    from rich.table import Table

    table = Table(show_header=False, title=str(model), title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    macs = info.get("macs")
    table.add_row("format", info["format"])
    table.add_row("precision", str(info.get("precision")))
    table.add_row("size", fmt_bytes(info.get("size_bytes")))
    table.add_row("parameters", fmt_count(info.get("params")))
    at = f" at {info['input_size'][0]}x{info['input_size'][1]}" if info.get("input_size") else ""
    table.add_row("MACs", f"{fmt_count(macs)} (batch 1{at}, from the graph)" if macs else
                  "not counted: the input size is dynamic (--input-size H[xW])"
                  if macs is None else "-")
    for kind in ("inputs", "outputs"):
        for t in info.get(kind, []):
            table.add_row(kind[:-1], f"{t['name']} {t['shape']} {t['dtype']}")
    table.add_row("preprocessing", describe(prep) if prep.get("name") != "unknown"
                  else f"unknown: {prep['why']}")
    ops = sorted(info.get("ops", {}).items(), key=lambda kv: -kv[1])
    table.add_row("ops", ", ".join(f"{k} {v}" for k, v in ops))
    console.print(table)
    if layers:
        lt = Table(title="layers with work")
        for col in ("name", "kind", "MACs", "params", "output"):
            lt.add_column(col)
        for row in info.get("layers", []):
            lt.add_row(row["name"], row["kind"], fmt_count(row.get("macs")),
                       fmt_count(row.get("params")), str(row.get("output_shape")))
        console.print(lt)
    for result in (info.get("checks") or {}).values():
        print_check(result)


def print_check(result: dict) -> None:
    """One check's verdict: unsupported ops with reasons, the MAC share that leaves it."""
    name = {"gpu": "TFLite GPU delegate", "xnnpack": "XNNPACK int8",
            "tensorrt": "TensorRT"}[result["check"]]
    bad = result["unsupported"]
    share = result["unsupported_macs_share"]
    verdict = (f"[green]all {result['ops_checked']} ops supported[/]" if not bad else
               f"[yellow]{len(bad)} of {result['ops_checked']} ops unsupported[/] "
               f"({100 * share:.1f}% of MACs)")
    console.print(f"{name}: {verdict}")
    for u in bad[:25]:
        short = u["name"] if len(u["name"]) <= 60 else u["name"][:57] + "..."
        console.print(f"  {u['op']} {short}: {u['reason']}", soft_wrap=True)
    if len(bad) > 25:
        console.print(f"  ... and {len(bad) - 25} more (--json lists all)")
    if "cpu_macs_share" in result:
        console.print(f"  estimated share of MACs left on the CPU: {100 * result['cpu_macs_share']:.1f}% "
                      "(unsupported ops plus ops outside the one delegated partition)")
    for note in result.get("notes", []):
        console.print(f"  note: {note}", soft_wrap=True)
    console.print(f"  rules from {result['source']}", style="dim")
