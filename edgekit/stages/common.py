"""What several stages share: help texts of common options, default output names, and the one
way a stage opens its input model with its preprocessing resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

PREP_HELP = ("The model's input preprocessing: tf ([-1,1]), torch (ImageNet mean/std), unit "
             "([0,1]) or raw ([0,255]). Default: its sidecar, else read from the graph; unknown "
             "stops the command.")
INPUT_SIZE_HELP = ("Input height and width for a model whose input size is dynamic: H, HxW or "
                   "a whole shape such as 1x3x320x320.")
UNSAFE_HELP = "Load Keras models with safe_mode off (runs code in the file)."


def default_output(model: Path, suffix: str, tag: str) -> Path:
    """MODEL_<tag><suffix> beside the model."""
    model = Path(model)
    return model.with_name(f"{model.stem}_{tag}{suffix}")


def open_model(path: Path, preprocessing: Optional[str] = None, *,
               needed_for: Optional[str] = None, keras_for: Optional[str] = None,
               unsafe: bool = False, resolve_preprocessing: bool = True):
    """The model at ``path`` as an Artifact whose ``preprocessing`` is resolved (flag, sidecar,
    graph). Unknown stops the stage only when ``needed_for`` says what needs it;
    ``keras_for`` (e.g. "training") refuses any format but Keras. Without
    ``resolve_preprocessing`` the artifact is returned as its sidecar describes it."""
    from ..core.artifacts import open_artifact
    from ..core.errors import BadInput
    from ..core.preprocessing import resolve

    art = open_artifact(path)
    if keras_for and art.format != "keras":
        raise BadInput(f"{path}: {keras_for} needs a Keras model (.keras or .h5), not "
                       f"{art.format}")
    if not resolve_preprocessing:
        return art
    graph = None
    if unsafe and art.format == "keras" and not (preprocessing or art.preprocessing):
        from ..models.load import read_keras

        graph = read_keras(art.path, unsafe=True)  # read with the caller's safe_mode
    prep = resolve(art, preprocessing, needed_for=needed_for, model=graph)
    art.meta.pop("preprocessing", None)
    if prep is not None:
        art.meta["preprocessing"] = prep
    return art
