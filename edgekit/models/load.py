"""Loading Keras models (``.keras``, ``.h5``) safely, with user-facing errors."""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import BadInput, EnvironmentProblem, first_line


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
    from ..optimize.qat import register

    keras = import_keras()
    register()  # a model trained with --qat holds edgekit's fake-quant layers
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


_READ_ONLY: dict[tuple, object] = {}  # (file identity, unsafe) -> model, oldest first
_READ_ONLY_KEEP = 4


def read_keras(path: str | Path, unsafe: bool = False):
    """A Keras model to read or run, never to change: loaded once per process while the file
    is unchanged (same inode, size and modification time), the last few kept. One
    ``profile --reference`` read each file up to four times (input shape, the preprocessing of
    each side), at 1-3 s a load. Anything that trains, edits or exports a model takes a fresh
    copy from ``load_keras``."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return load_keras(path, unsafe)  # its error message
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, unsafe)
    model = _READ_ONLY.pop(key, None)
    if model is None:
        model = load_keras(path, unsafe)
    _READ_ONLY[key] = model  # now the newest
    while len(_READ_ONLY) > _READ_ONLY_KEEP:
        del _READ_ONLY[next(iter(_READ_ONLY))]
    return model


def leaf_layers(model):
    """Every layer of a Keras model, nested models (a keras.applications base) entered."""
    keras = import_keras()
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaf_layers(layer)
        else:
            yield layer


def keras_input_hwc(model) -> tuple[int, int, int]:
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise BadInput(f"model input shape {shape} is not (batch, height, width, channels) "
                       "with a fixed size")
    return int(shape[1]), int(shape[2]), int(shape[3])


def with_input_size(model, size: tuple[int, int] | None, what: str = "the model"):
    """``model`` itself when its input size is fixed; a copy with input ``size`` (H, W) and
    the same weights when it is dynamic (``(None, None, C)``); BadInput when it is dynamic and
    no size is given. The copy is rebuilt from the model's config with every InputLayer's
    height and width set (nested models too), so every layer's shapes are concrete."""
    from ..core.shapes import channels_axis, concrete, is_dynamic

    shape = list(model.inputs[0].shape)
    if len(shape) != 4 or not is_dynamic(shape):
        if size is not None and len(shape) == 4:
            concrete(shape, size, what)  # a contradicting --input-size is an error
        return model
    concrete(shape, size, what)  # no size: one clear error
    keras = import_keras()

    def fix(node):
        if isinstance(node, dict):
            if node.get("class_name") == "InputLayer":
                cfg = node["config"]
                key = "batch_shape" if "batch_shape" in cfg else "batch_input_shape"
                old = list(cfg.get(key) or [])
                if len(old) == 4:
                    h, w = (2, 3) if channels_axis(old) == 1 else (1, 2)
                    old[h], old[w] = size
                    cfg[key] = old
            for value in node.values():
                fix(value)
        elif isinstance(node, list):
            for value in node:
                fix(value)

    config = keras.saving.serialize_keras_object(model)
    fix(config)
    try:
        fixed = keras.saving.deserialize_keras_object(config)
        fixed.set_weights(model.get_weights())
    except Exception as exc:  # a layer whose weights depend on the input size
        raise BadInput(f"{what}: cannot rebuild it at {size[0]}x{size[1]} "
                       f"({first_line(exc, 160)})") from None
    return fixed
