"""What ``edgekit report`` prints (the command is made from the stage's options model:
``edgekit.stages.evaluate``)."""

from __future__ import annotations

from .._common import console, table


def render(result) -> None:
    """The variants as a table, what the notes say, and the files written."""
    from ...evaluate.report import notes, table_rows

    doc = result.to_json()
    rows = table_rows(doc, short=True)
    console.print(table(f"{len(rows) - 1} variant(s)", rows[0], rows[1:]))
    console.print("*: on the Pareto front (no other variant is both faster and more accurate). "
                  "fidelity: top-1 agreement and SNR vs the profile's reference.")
    for line in notes(doc):
        console.print(line, soft_wrap=True, highlight=False)
    if doc.get("files"):
        console.print("wrote " + ", ".join(doc["files"]))
