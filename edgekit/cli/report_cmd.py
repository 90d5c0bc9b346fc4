"""``edgekit report``: a run's variants as Markdown or self-contained HTML with plots."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import FORCE_OPT, JSON_OPT, console, emit_json


def report(
    inputs: list[Path] = typer.Argument(..., help="run.json of `edgekit run`, `edgekit "
                                        "profile` results and artifact sidecars (*.json)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="report.html "
                                          "(self-contained) or report.md (PNGs beside it). "
                                          "Default: a table on the terminal."),
    force: bool = FORCE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Tables of every variant (size, MACs, latency measured or predicted, accuracy,
    fidelity) and plots: accuracy vs latency with the Pareto front, MACs per block, and the
    before/after of each stage."""
    from ..core.artifacts import check_output, write_bytes_atomic, write_text_atomic
    from ..core.errors import BadInput
    from ..evaluate.report import collect, markdown, notes, plots, table_rows, to_html

    if output is not None:
        if output.suffix not in (".html", ".md"):
            raise BadInput(f"{output}: the report must be a .html or .md file")
        check_output(output, force)
    doc = collect(inputs)
    if output is not None:
        pngs = plots(doc)
        if output.suffix == ".html":
            write_text_atomic(output, to_html(doc, pngs), force=True)
            doc["files"] = [str(output)]
        else:
            names = {k: output.with_name(f"{output.stem}-{k}.png") for k in pngs}
            for k, path in names.items():
                check_output(path, force)
            for k, path in names.items():
                write_bytes_atomic(path, pngs[k], force=True)
            write_text_atomic(output, markdown(doc, {k: p.name for k, p in names.items()}),
                              force=True)
            doc["files"] = [str(output), *map(str, names.values())]
    if json_out:
        emit_json(doc)
        return
    from rich.table import Table

    rows = table_rows(doc, short=True)
    table = Table(title=f"{len(rows) - 1} variant(s)", title_justify="left")
    for col in rows[0]:
        table.add_column(col, no_wrap=col in ("variant", "size", "MACs", "params"))
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
    console.print("*: on the Pareto front (no other variant is both faster and more accurate). "
                  "fidelity: top-1 agreement and SNR vs the profile's reference.")
    for line in notes(doc):
        console.print(line, soft_wrap=True, highlight=False)
    if output is not None:
        console.print("wrote " + ", ".join(doc["files"]))
