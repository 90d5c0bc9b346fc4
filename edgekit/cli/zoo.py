"""``edgekit zoo list | build``: the model families, built from architecture data."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import (FORCE_OPT, JSON_OPT, SAVE_RECIPE_OPT, console, emit_json, fmt_count,
                      recipe_saver)

app = typer.Typer(help="List and build the MobileNet / EfficientNet families.",
                  no_args_is_help=True)


@app.command("list")
def list_families(json_out: bool = JSON_OPT) -> None:
    """List every family with its default width, depth and resolution."""
    from ..registry import FAMILIES

    rows = [{"name": name, **entry.caps} for name, entry in sorted(FAMILIES.items())]
    if json_out:
        emit_json({"schema": "edgekit.zoo/1", "families": rows})
        return
    from rich.table import Table

    table = Table(title="edgekit zoo", caption="scales: w = width, d = depth, r = resolution")
    table.add_column("family", no_wrap=True)
    for col in ("kind", "width", "depth", "resolution", "scales"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], str(r.get("kind", "")), str(r.get("width", "")),
                      str(r.get("depth", "")), str(r.get("resolution", "")),
                      ",".join(s[0] for s in r.get("scales", [])))
    console.print(table)


@app.command("build")
def build(
    family: str = typer.Argument(..., help="Family name, e.g. mobilenet_v2 (see `zoo list`)."),
    output: Path = typer.Option(..., "-o", "--output", help="Output .keras file."),
    width: Optional[float] = typer.Option(None, help="Width multiplier (default: the family's)."),
    depth: Optional[float] = typer.Option(None, help="Depth multiplier (default: the family's)."),
    resolution: Optional[int] = typer.Option(None, help="Input resolution in pixels."),
    classes: int = typer.Option(1000, help="Number of output classes."),
    dropout: Optional[float] = typer.Option(None, help="Dropout before the classifier."),
    seed: int = typer.Option(0, help="Seed for the initial weights (same seed, same weights)."),
    weights: Optional[str] = typer.Option(
        None, "--weights", help="Start from ImageNet weights: 'imagenet' (keras.applications' "
        "file, read from the Keras cache), or a PyTorch checkpoint .pth (torchvision "
        "MobileNetV2, EfficientNet-Lite0..4; needs edgekit[torch]). The model gets the 1000 "
        "ImageNet classes (use finetune --classes for yours) and is checked against the "
        "weights' own framework on real photos."),
    save_recipe: Optional[Path] = SAVE_RECIPE_OPT,
    force: bool = FORCE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Build a family at any width, depth and resolution as a .keras file: random weights,
    or pretrained ImageNet weights with --weights."""
    args = dict(locals())  # the parameters, for --save-recipe
    save = recipe_saver(save_recipe, "zoo.build", args, force)
    from ..artifacts import check_output
    from ..errors import BadInput

    check_output(output, force, suffix=".keras")
    if weights is not None and classes != 1000:
        raise BadInput("--weights brings the 1000-class ImageNet classifier; build with 1000 "
                       "classes, then `edgekit finetune --classes N` for a new head")
    with console.status(f"building {family}" + (f" with {weights} weights" if weights else "")):
        if weights is not None:
            from ..models.pretrained import build_pretrained

            art = build_pretrained(family, weights, output, width=width, depth=depth,
                                   resolution=resolution, dropout=dropout, force=force)
        else:
            from ..models.zoo import build_artifact

            art = build_artifact(family, output, width=width, depth=depth,
                                 resolution=resolution, classes=classes, dropout=dropout,
                                 seed=seed, force=force)
    save()
    doc = {**art.meta, "schema": "edgekit.zoo.build/1", "path": str(output)}
    if json_out:
        emit_json(doc)
        return
    spec = art.meta["spec"]
    console.print(f"wrote {output}: {family} width {spec['width']} depth {spec['depth']} "
                  f"resolution {spec['resolution']}, {fmt_count(art.meta['params'])} params, "
                  f"{classes} classes")
    if weights is not None:
        rec, prep = art.meta["pretrained"], art.meta["preprocessing"]
        check = rec["check"]
        console.print(f"weights: {rec['source']} ({rec['file']}); input (pixel - "
                      f"{prep['mean']}) / {prep['std']}, centre crop {prep['crop']}")
        console.print(f"checked against {check['reference']} on {check['n_images']} images "
                      f"({check['images']}): max |difference| of the probabilities "
                      f"{check['max_abs_diff_probs']:.2g} (limit {check['tolerance']:g}); "
                      f"top-1 {'; '.join(check['top1'])}")
