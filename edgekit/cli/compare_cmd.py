"""``edgekit compare BASE.json NEW.json``: the CI gate (exit 1 on a regression)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import JSON_OPT, console, emit_json


def compare(
    base: Path = typer.Argument(..., help="Baseline result (edgekit profile ... -o base.json)."),
    new: Path = typer.Argument(..., help="New result to check against the baseline."),
    max_accuracy_drop: float = typer.Option(0.5, help="Largest allowed top-1 drop, in points "
                                            "(for like against like; int8 on x86 vs Arm "
                                            "differed by 0.8 on 1,000 images)."),
    max_agreement_drop: float = typer.Option(1.0, help="Largest allowed drop of top-1 "
                                             "agreement with the reference, in points."),
    max_latency_regression: str = typer.Option("10%", help="Largest allowed p50 latency "
                                               "growth (same CPU and threads only)."),
    max_size_growth: str = typer.Option("5%", help="Largest allowed model size growth."),
    max_memory_growth: str = typer.Option("20%", help="Largest allowed peak memory growth."),
    min_prediction_agreement: Optional[str] = typer.Option(
        None, help="Smallest allowed share of images with the same top-1 class in both "
                   "results (default: reported, not gated)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Compare two profile results (accuracy, fidelity, latency, size, memory) against
    thresholds; exit 1 if any metric regressed, so a CI job fails."""
    from ..evaluate.compare import Limits, compare as run_compare, load_result, parse_percent
    from ..core.errors import BadInput, GateFailed

    for name, v in (("--max-accuracy-drop", max_accuracy_drop),
                    ("--max-agreement-drop", max_agreement_drop)):
        if v < 0:
            raise BadInput(f"{name} must not be negative (got {v:g})")
    limits = Limits(max_accuracy_drop, max_agreement_drop,
                    parse_percent(max_latency_regression, "--max-latency-regression"),
                    parse_percent(max_size_growth, "--max-size-growth"),
                    parse_percent(max_memory_growth, "--max-memory-growth"),
                    None if min_prediction_agreement is None else
                    parse_percent(min_prediction_agreement, "--min-prediction-agreement"))
    doc = run_compare(load_result(base), load_result(new), limits)
    if json_out:
        emit_json(doc)
    else:
        _print(doc, base, new)
    if not doc["passed"]:
        raise GateFailed(f"regression in {', '.join(doc['regressions'])} ({new} vs {base})")


def _fmt(v, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "bytes":
        from ._common import fmt_bytes
        return fmt_bytes(v)
    return f"{v:.3f}" if unit == "ms" else f"{v:.2f}"  # % and MB


def _print(doc: dict, base: Path, new: Path) -> None:
    from rich.table import Table

    from rich import box

    table = Table(title=f"{new} vs {base}", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("metric", "base", "new", "change", "limit", "status"):
        table.add_column(col, justify="right" if col in ("base", "new", "change") else "left",
                         no_wrap=True)
    notes = []
    for r in doc["rows"]:
        c = r["change"]
        change = "-" if c is None else f"{c:+.2f} pt" if r["unit"] == "%" else (
            f"{c:+.1f}%" if abs(c) < 1000 else f"{1 + c / 100:.0f}x")
        style = {"REGRESSION": "bold red", "ok": "green"}.get(r["status"], "dim")
        mark = ""
        if r["note"]:
            notes.append(r["note"])
            mark = f" [{len(notes)}]"
        table.add_row(r["metric"], _fmt(r["base"], r["unit"]), _fmt(r["new"], r["unit"]),
                      change, r["limit"], f"[{style}]{r['status']}[/]{mark}")
    console.print(table)
    for i, note in enumerate(notes, 1):
        console.print(f"[dim][{i}] {note}[/]", highlight=False)
