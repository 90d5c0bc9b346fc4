"""``edgekit inspect MODEL``: what a model is, computed from its graph."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import JSON_OPT, console, emit_json, fmt_bytes, fmt_count


def inspect(
    model: Path = typer.Argument(..., help="A .keras/.h5 file, SavedModel folder, .tflite or .onnx."),
    layers: bool = typer.Option(False, "--layers", help="Also list every layer with work."),
    json_out: bool = JSON_OPT,
) -> None:
    """Parameters, MACs, size, input/output spec, precision and op histogram of a model."""
    from ..analyze import analyze
    from ..artifacts import open_artifact

    art = open_artifact(model)
    with console.status(f"reading {model}"):
        info = analyze(art.path, art.format)
    doc = {"schema": "edgekit.inspect/1", "path": str(model), "sha256": art.sha256, **info,
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
    table.add_row("MACs", f"{fmt_count(macs)} (batch 1, from the graph)" if macs else "-")
    for kind in ("inputs", "outputs"):
        for t in info.get(kind, []):
            table.add_row(kind[:-1], f"{t['name']} {t['shape']} {t['dtype']}")
    prep = (doc["sidecar"] or {}).get("preprocessing")
    table.add_row("preprocessing", f"(pixel - {prep['mean']}) / {prep['std']}" if prep
                  else "unknown (no sidecar)")
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
