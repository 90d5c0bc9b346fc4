"""What ``edgekit predict MODEL IMAGE...`` prints (the command is made from the stage's options
model: ``edgekit.stages.evaluate``)."""

from __future__ import annotations

from .._common import console


def render(result) -> None:
    """The top classes of each image, or the output's statistics when it is not class
    scores."""
    doc, model = result.to_json(), result.model
    from rich.table import Table

    if doc["predictions"] is None:
        console.print(f"{model}: {doc['outputs']['why']}, so no classes are shown; "
                      "its first output per image:")
        table = Table()
        for col in ("image", "shape", "min", "max", "mean", "std"):
            table.add_column(col, justify="left" if col == "image" else "right")
        for t in doc["tensors"]:
            table.add_row(t["image"], str(t["shape"]),
                          *(f"{t[k]:.4g}" for k in ("min", "max", "mean", "std")))
        console.print(table)
        return
    note = " (softmax of the model's outputs)" if doc["softmax_applied"] else ""
    for item in doc["predictions"]:
        console.print(f"[bold]{item['image']}[/bold]", soft_wrap=True)
        table = Table()
        for col, justify in (("#", "right"), ("class", "right"), ("label", "left"),
                             ("score" + note, "right")):
            table.add_column(col, justify=justify)
        for rank, t in enumerate(item["top"], start=1):
            table.add_row(str(rank), str(t["class"]), t["label"] or "-", f"{t['score']:.4f}")
        console.print(table)
