"""The ``build`` stage (``edgekit zoo build``): a zoo family at any width, depth and
resolution, with random or pretrained weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.errors import BadInput
from .base import QUIET, Options, Reporter, Stage, option


class BuildOptions(Options):
    family: str = option(..., "Family name, e.g. mobilenet_v2 (see `zoo list`).", argument=True)
    width: Optional[float] = option(None, "Width multiplier (default: the family's).")
    depth: Optional[float] = option(None, "Depth multiplier (default: the family's).")
    resolution: Optional[int] = option(None, "Input resolution in pixels.")
    classes: int = option(1000, "Number of output classes.")
    dropout: Optional[float] = option(None, "Dropout before the classifier.")
    weights: Optional[str] = option(
        None, "Start from ImageNet weights: 'imagenet' (keras.applications' file, read from the "
        "Keras cache), or a PyTorch checkpoint .pth (torchvision MobileNetV2, "
        "EfficientNet-Lite0..4; needs edgekit[torch]). The model gets the 1000 ImageNet "
        "classes (use finetune --classes for yours) and is checked against the weights' own "
        "framework on real photos.")
    seed: int = option(0, "Seed for the initial weights (same seed, same weights).")


def build(_: None, o: BuildOptions, output: Path, *, force: bool = False,
          reporter: Reporter = QUIET):
    """Build a family at any width, depth and resolution as a .keras file: random weights,
    or pretrained ImageNet weights with --weights.

    Returns the model's Artifact (its architecture spec in ``.meta["spec"]``)."""
    from ..core.artifacts import check_output

    if output is None:
        raise BadInput("build needs an output file (-o/--output, out= in Python)")
    check_output(output, force, suffix=".keras")
    if o.weights is not None and o.classes != 1000:
        raise BadInput("--weights brings the 1000-class ImageNet classifier; build with 1000 "
                       "classes, then `edgekit finetune --classes N` for a new head")
    reporter.status(f"building {o.family}" + (f" with {o.weights} weights" if o.weights else ""))
    if o.weights is not None:
        from ..models.pretrained import build_pretrained

        return build_pretrained(o.family, o.weights, output, width=o.width, depth=o.depth,
                                resolution=o.resolution, dropout=o.dropout, force=force)
    from ..models.zoo import build_artifact

    return build_artifact(o.family, output, width=o.width, depth=o.depth,
                          resolution=o.resolution, classes=o.classes, dropout=o.dropout,
                          seed=o.seed, force=force)


BUILD = Stage("build", BuildOptions, build, source="none", output_required=True,
              output_help="Output .keras file.")
