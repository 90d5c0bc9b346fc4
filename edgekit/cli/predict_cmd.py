"""``edgekit predict MODEL IMAGE...``: top-k classes with scores, any model format."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import INPUT_SIZE_OPT, JSON_OPT, PREP_OPT, console, emit_json


def predict(
    model: Path = typer.Argument(..., help="A .keras, .tflite or .onnx model (its sidecar gives "
                                 "the preprocessing and the class names)."),
    images: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, ...)."),
    top: int = typer.Option(5, "--top", "-k", help="How many classes to show per image."),
    preprocessing: Optional[str] = PREP_OPT,
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    input_size: Optional[str] = INPUT_SIZE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Classify images: the top classes with their scores, for each image."""
    from ..core.artifacts import open_artifact
    from ..evaluate.predict import predict as run_predict
    from ..core.shapes import parse_input_size

    art = open_artifact(model)
    with console.status(f"running {model.name} on {len(images)} image(s)"):
        doc = run_predict(art, images, top=top, preprocessing=preprocessing, threads=threads,
                          input_size=parse_input_size(input_size))
    if json_out:
        emit_json(doc)
        return
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
