"""``edgekit inspect MODEL``: what a model is, computed from its graph."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import INPUT_SIZE_OPT, JSON_OPT, console, emit_json, fmt_bytes, fmt_count


def inspect(
    model: Path = typer.Argument(..., help="A .keras/.h5 file, SavedModel folder, .tflite or .onnx."),
    layers: bool = typer.Option(False, "--layers", help="Also list every layer with work."),
    checks: list[str] = typer.Option(
        [], "--check", help="Runtime compatibility check, op by op (repeatable): gpu (TFLite GPU "
        "delegate), xnnpack (TFLite int8 on XNNPACK), tensorrt (ONNX for TensorRT)."),
    input_size: Optional[str] = INPUT_SIZE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Parameters, MACs, size, input/output spec, precision and op histogram of a model, and
    which ops a runtime would not run (--check)."""
    from ..evaluate.analyze import analyze
    from ..core.artifacts import open_artifact
    from ..core.preprocessing import describe
    from ..core.shapes import parse_input_size

    art = open_artifact(model)
    with console.status(f"reading {model}"):
        info = analyze(art.path, art.format, parse_input_size(input_size))
        if checks:
            from ..formats.compat import check
            info["checks"] = {c: check(art.path, art.format, c) for c in dict.fromkeys(checks)}
        prep = preprocessing_of(art)
    doc = {"schema": "edgekit.inspect/1", "path": str(model), "sha256": art.sha256, **info,
           "preprocessing": prep,
           "sidecar": {k: art.meta[k] for k in ("preprocessing", "labels", "parent", "stage",
                                                 "precision") if k in art.meta} or None}
    if json_out:
        emit_json(doc)
        return
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


def preprocessing_of(art) -> dict:
    """The artifact's preprocessing (sidecar, else its graph), or why it is unknown."""
    from ..core.preprocessing import infer, resolve

    if art.preprocessing:
        return resolve(art)
    prep, why = infer(art)
    return prep or {"name": "unknown", "why": why}


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
