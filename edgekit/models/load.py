"""Loading Keras models (``.keras``, ``.h5``) safely, with user-facing errors."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadInput, EnvironmentProblem, first_line


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def import_keras():
    quiet_tensorflow()
    try:
        import keras
    except ImportError as exc:  # pragma: no cover - keras is a dependency
        raise EnvironmentProblem(f"keras is not installed ({exc})") from None
    return keras


def load_keras(path: str | Path, unsafe: bool = False):
    """Load a Keras model; ``safe_mode`` stays on unless the user passed ``--unsafe``."""
    keras = import_keras()
    path = Path(path)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as exc:
        if "safe_mode" in str(exc) or "Lambda" in str(exc):
            raise BadInput(f"{path}: the model contains code (e.g. a Lambda layer) that safe "
                           "mode refuses to load; pass --unsafe only if you trust the file") from None
        raise BadInput(f"{path}: cannot load as a Keras model ({first_line(exc)})") from None
    except Exception as exc:  # corrupt zip, truncated h5, unknown layer... all user input
        raise BadInput(f"{path}: cannot load as a Keras model ({first_line(exc)})") from None


def keras_input_hwc(model) -> tuple[int, int, int]:
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise BadInput(f"model input shape {shape} is not (batch, height, width, channels) "
                       "with a fixed size")
    return int(shape[1]), int(shape[2]), int(shape[3])
