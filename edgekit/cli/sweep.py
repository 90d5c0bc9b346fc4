"""``edgekit sweep SWEEP.yaml``: many variants on Ray, over every device of a lab."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import CACHE_DIR_OPT, JSON_OPT, NO_CACHE_OPT, RUNS_DIR_OPT, console, emit_json


def sweep(
    sweep_file: str = typer.Argument(..., help="Sweep YAML (a recipe template with a "
                                     "matrix, or a list of recipes), or the name of a shipped "
                                     "one (mobilenet_v2-widths-sweep)."),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster to run on "
                                          "(HOST:PORT of `edgekit lab start --head`, or "
                                          "ray://HOST:PORT). Default: RAY_ADDRESS, else a "
                                          "local Ray on this machine."),
    lab: Optional[Path] = typer.Option(None, "--lab", help="Lab file of the devices this "
                                       "machine reaches (local Ray; a cluster's nodes declare "
                                       "theirs with `edgekit lab start`)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the expanded jobs, the "
                                 "device each needs and what is cached; run nothing."),
    runs_dir: Path = RUNS_DIR_OPT,
    cache_dir: Optional[Path] = CACHE_DIR_OPT,
    no_cache: bool = NO_CACHE_OPT,
    cpus: Optional[int] = typer.Option(None, "--cpus", min=1, help="CPUs of the local Ray "
                                       "(default: every core)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Run a sweep: every variant of a recipe (families x widths x precisions x devices) as
    Ray jobs spread over the nodes of a cluster, each measurement on a device of its kind.
    Jobs already in the stage cache are not run again, on any node."""
    from ..cluster.sweep import Sweep, plan_rows
    from ..core.errors import BadInput

    if address and lab:
        raise BadInput("--lab declares this machine's devices for a local Ray; on a cluster "
                       "each node declares its own (edgekit lab start --lab)")
    loaded = Sweep(sweep_file, cache_dir or runs_dir / ".cache")
    if dry_run:
        rows, problems = plan_rows(loaded), loaded.problems()
        if json_out:
            emit_json({"schema": "edgekit.sweep-plan/1", "sweep": str(sweep_file),
                       "name": loaded.name, "variants": [v.name for v in loaded.variants],
                       "devices": loaded.devices(), "jobs": rows, "problems": problems})
        else:
            _plan(loaded, rows, problems)
        if problems:
            raise BadInput(f"the sweep would fail: {problems[0]}" + (
                f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
        return
    from ..cluster.executor import run_sweep

    doc = None
    with _Progress(quiet=json_out) as progress:
        try:
            doc = run_sweep(loaded, runs_dir, address=address, lab=lab, num_cpus=cpus,
                            use_cache=not no_cache, watch=progress.update)
        finally:
            if doc is None and not json_out and (runs_dir / "latest").exists():
                progress.stop()
                console.print(f"run folder: {(runs_dir / 'latest').resolve()} (finished jobs "
                              "are cached)")
    if json_out:
        emit_json(doc)
    else:
        _summary(doc)


def _plan(sweep, rows: list[dict], problems: list[str]) -> None:
    shared = sum(len(r["variants"]) for r in rows) - len(rows)
    console.print(f"[bold]{sweep.name}[/]: {len(sweep.variants)} variant(s), {len(rows)} "
                  f"job(s) ({shared} shared between variants), "
                  f"{sum(r['cached'] for r in rows)} cached")
    devices = sweep.devices()
    if devices:
        console.print("  devices: " + ", ".join(f"{d} ({n} job(s))" for d, n in devices.items()))
    for r in rows:
        state = "[green]cached[/]" if r["cached"] else "[yellow]runs[/]"
        where = f"on {r['device']}" if r["device"] else "any CPU"
        more = f" (+{len(r['variants']) - 1} variant(s))" if len(r["variants"]) > 1 else ""
        console.print(f"  {state} {r['id']} ({r['stage']}, {where}){more}", soft_wrap=True,
                      highlight=False)
    for p in problems:
        console.print(f"  [red]missing[/] {p}", soft_wrap=True, highlight=False)


class _Progress:
    """Jobs done / running / queued per device (and "cpu" for the rest), live on stderr."""

    def __init__(self, quiet: bool):
        self.quiet, self.live = quiet, None

    def __enter__(self):
        if not self.quiet:
            from rich.live import Live

            self.live = Live(console=console.rich(), refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def update(self, jobs) -> None:
        if self.live is None:
            return
        from rich.table import Table

        groups: dict[str, dict[str, int]] = {}
        for j in jobs:
            g = groups.setdefault(j.device or "cpu", {})
            state = "cached" if j.cached else j.state
            g[state] = g.get(state, 0) + 1
        table = Table(title="sweep", title_justify="left")
        cols = ("done", "cached", "running", "queued", "waiting", "failed", "not run")
        for col in ("jobs on", *cols):
            table.add_column(col, justify="left" if col == "jobs on" else "right")
        for name, g in groups.items():
            table.add_row(name, *(str(g.get(c, 0)) for c in cols))
        self.live.update(table)

    def stop(self) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def __exit__(self, *exc) -> None:
        self.stop()


def _summary(doc: dict) -> None:
    from rich.table import Table

    c = doc["counts"]
    table = Table(title=f"{doc['name']}: {doc['status']} in {doc['wall_s']:.1f} s -- "
                  f"{c['jobs']} job(s): {c['ran']} ran, {c['cached']} cached, {c['failed']} "
                  f"failed, {c['not_run']} not run", title_justify="left")
    for col in ("variant", "status", "gates"):
        table.add_column(col)
    for v in doc["variants"]:
        gates = ", ".join(("pass " if g["passed"] else "FAIL ") + g["gate"] for g in v["gates"])
        table.add_row(v["name"], v["status"], gates or v.get("error") or "")
    console.print(table)
    nodes = {n["node"]: n["hostname"] for n in doc["ray"]["nodes"]}
    used = sorted({(nodes.get(j["node"], j["node"] or "?")[:24], (j["node"] or "")[:8])
                   for j in doc["jobs"] if j["node"] and not j["cached"]})
    if used:
        console.print("nodes: " + ", ".join(f"{h} ({n})" for h, n in used))
    console.print(f"run folder: {doc['run_dir']}")
