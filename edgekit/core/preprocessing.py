"""What a model expects its input pixels to be, and how edgekit knows.

A preprocessing is ``{"mean": [...], "std": [...], "channel_order": "RGB"}`` in 0..255 pixel
units (``x = (pixel - mean) / std``), plus ``name`` when it is one of the named conventions
and ``decided_by``: where it came from. One function, :func:`resolve`, answers for every model
a command touches (source, teacher, reference, profiled artifact), in this order:

1. the command's flag (``--preprocessing``);
2. the sidecar edgekit wrote beside the file (it records how it was decided, in turn);
3. the graph itself: leading Keras ``Rescaling``/``Normalization`` layers or leading ONNX
   ``Sub``/``Div``/``Mul``/``Add`` with constant operands mean the model takes raw pixels
   (0..255) or 0..1; with none, a keras.applications layout whose ``preprocess_input`` is
   known (MobileNet, MobileNetV2, MobileNetV3 and EfficientNetV2 built without their
   preprocessing layer);
4. otherwise unknown: a command that feeds real images stops and asks for the flag rather
   than run on a guess (a wrong input range drops a trained model to chance, silently).

Keras and onnx are imported inside the functions that read graphs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInput
from .shapes import channels_axis

# Named conventions, in 0..255 pixel units: x = (pixel - mean) / std.
PREPROCESSING = {
    "tf": {"mean": [127.5] * 3, "std": [127.5] * 3},  # MobileNet / EfficientNet-Lite: [-1, 1]
    "torch": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},  # ImageNet
    "unit": {"mean": [0.0] * 3, "std": [255.0] * 3},  # [0, 1]
    "raw": {"mean": [0.0] * 3, "std": [1.0] * 3},  # [0, 255]
}
RANGES = {"tf": "[-1, 1]", "torch": "ImageNet mean/std", "unit": "0..1", "raw": "raw 0..255"}
# Input values used where only the shape matters (timing runs): any finite range will do.
TIMING_ONLY = {"mean": [127.5] * 3, "std": [127.5] * 3, "channel_order": "RGB"}

# keras.applications layouts with nothing in the graph, recognised by layer names that only
# they use, and the range their ``preprocess_input`` produces (keras/src/applications/*.py).
_KERAS_LAYOUTS = (
    ("keras.applications MobileNet", {"conv1", "conv_dw_1", "conv_pw_1"}, "tf"),
    ("keras.applications MobileNetV2", {"Conv1", "bn_Conv1", "expanded_conv_depthwise"}, "tf"),
    ("keras.applications MobileNetV3 (include_preprocessing=False)",
     {"conv", "conv_bn", "expanded_conv_depthwise"}, "tf"),
)
# EfficientNetV2 without its Rescaling: B0-B3 then expect ImageNet mean/std, S/M/L [-1, 1].
_EFFNETV2 = {"efficientnetv2-b": "torch", "efficientnetv2-s": "tf", "efficientnetv2-m": "tf",
             "efficientnetv2-l": "tf"}


def named(name: str, decided_by: str | None = None) -> dict[str, Any]:
    """The named convention ``name`` as a preprocessing dict."""
    if name not in PREPROCESSING:
        raise BadInput(f"unknown preprocessing '{name}' (known: {', '.join(PREPROCESSING)})")
    out = {**PREPROCESSING[name], "channel_order": "RGB", "name": name}
    return out | ({"decided_by": decided_by} if decided_by else {})


def describe(prep: dict | None) -> str:
    """One line for the console: what the input is and how that was decided."""
    if not prep:
        return "unknown"
    name = prep.get("name") or next(
        (n for n, v in PREPROCESSING.items()
         if np.allclose(v["mean"], prep.get("mean", []) or [np.nan])
         and np.allclose(v["std"], prep.get("std", []) or [np.nan])), None)
    what = RANGES.get(name) or (f"pixel * {prep.get('scale')} + {prep.get('offset', 0)}"
                                if "mean" not in prep else
                                f"(pixel - {prep.get('mean')}) / {prep.get('std')}")
    return f"{what} ({prep.get('decided_by') or 'sidecar'})"


def resolve(art, flag: str | None = None, *, needed_for: str | None = None, model=None,
            flag_name: str = "--preprocessing",
            fallback: dict | None = None) -> dict[str, Any] | None:
    """The preprocessing of artifact ``art``: ``flag``, else its sidecar, else read from its
    graph (``model``: the loaded Keras model, when the caller has it), else ``fallback``.
    Unknown is ``None``, or, when ``needed_for`` names what needs it, one BadInput saying how
    to state it."""
    if flag:
        return named(flag, f"{flag_name} {flag}")
    if art.preprocessing:
        return {**art.preprocessing,
                "decided_by": art.preprocessing.get("decided_by") or "sidecar"}
    prep, why = infer(art, model)
    prep = prep or fallback
    if prep is None and needed_for:
        raise BadInput(f"{art.path}: the input range it expects is unknown ({why}); "
                       f"{needed_for} needs it", hint=f"pass {flag_name} tf|torch|unit|raw")
    return prep


def infer(art, model=None) -> tuple[dict | None, str]:
    """(preprocessing read from the graph, or None; why not, when None)."""
    if art.format == "keras":
        if model is None:
            from ..models.load import read_keras

            model = read_keras(art.path)
        return from_keras(model)
    if art.format == "onnx":
        import onnx

        return from_onnx(onnx.load(str(art.path), load_external_data=False),
                         str(Path(art.path).parent))
    return None, f"no sidecar, and edgekit does not read preprocessing from a {art.format} graph"


# --- Keras -----------------------------------------------------------------------------------


def from_keras(model) -> tuple[dict | None, str]:
    """Read the preprocessing from a Keras model's leading layers or its layout."""
    import keras

    chain, layers = _leading_keras_layers(model)
    if chain:
        scale, offset = _probe_keras(chain, tuple(model.inputs[0].shape[1:]))
        steps = ", ".join(_keras_step(layer) for layer in chain)
        return _from_affine(scale, offset, f"in-graph {steps}")
    names = {layer.name for layer in layers}
    for what, needed, name in _KERAS_LAYOUTS:
        if needed <= names:
            return named(name, f"{what} layout, as its preprocess_input"), ""
    for sub in [model, *(l for l in layers if isinstance(l, keras.Model))]:
        for prefix, name in _EFFNETV2.items():
            if sub.name.startswith(prefix):
                return named(name, f"keras.applications {sub.name} layout without its "
                                   "Rescaling layer"), ""
    return None, ("no sidecar, no Rescaling/Normalization layer at the input and not a "
                  "keras.applications layout edgekit knows")


def _leading_keras_layers(model):
    """(the Rescaling/Normalization layers the input meets first, nested models entered;
    every layer of the model and its nested models)."""
    import itertools

    import keras

    from ..models.load import leaf_layers

    flat = [l for l in leaf_layers(model) if not isinstance(l, keras.layers.InputLayer)]
    pre_types = (keras.layers.Rescaling, keras.layers.Normalization)
    return list(itertools.takewhile(lambda l: isinstance(l, pre_types), flat)), flat


def _probe_keras(chain, shape) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) per channel of the layers in ``chain``, run on images of 0s and 1s."""
    channels = int(shape[-1]) if shape and shape[-1] else 3
    x = np.stack([np.zeros((1, 1, channels)), np.ones((1, 1, channels))]).astype(np.float32)
    for layer in chain:
        x = np.asarray(layer(x))
    return (x[1, 0, 0] - x[0, 0, 0]), x[0, 0, 0]


def _keras_step(layer) -> str:
    cfg = layer.get_config()
    if "scale" in cfg and "offset" in cfg:  # Rescaling
        scale = cfg["scale"]
        text = (f"1/{1 / scale:.4g}" if isinstance(scale, (int, float)) and 0 < scale < 1
                else f"{scale}")
        return f"Rescaling {text}" + (f" offset {cfg['offset']:g}"
                                      if isinstance(cfg["offset"], (int, float)) and cfg["offset"]
                                      else "")
    return type(layer).__name__


# --- ONNX ------------------------------------------------------------------------------------

_ONNX_ARITH = {"Sub": np.subtract, "Div": np.divide, "Mul": np.multiply, "Add": np.add}


def from_onnx(proto, base_dir: str = "") -> tuple[dict | None, str]:
    """Read the preprocessing from arithmetic with constants on an ONNX model's input
    (``base_dir``: where the file's external data lies)."""
    from onnx import numpy_helper

    graph = proto.graph
    consts = {t.name: numpy_helper.to_array(t, base_dir) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1:
        return None, f"no sidecar, and the model has {len(inputs)} inputs"
    dims = [d.dim_value if d.HasField("dim_value") else 0
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        return None, f"no sidecar, and its input has {len(dims)} dimensions, not 4"
    channel_axis = channels_axis(dims)
    channels = dims[channel_axis] or 3
    probe_shape = [2, 1, 1, 1]
    probe_shape[channel_axis] = channels
    x = np.zeros(probe_shape, np.float64)
    x[1] = 1.0
    tensor, steps = inputs[0].name, []
    while True:
        users = [n for n in graph.node if tensor in n.input]
        if len(users) != 1 or users[0].op_type not in _ONNX_ARITH:
            break
        node = users[0]
        other = [i for i in node.input if i != tensor]
        if len(other) != 1 or other[0] not in consts:
            break
        c = consts[other[0]].astype(np.float64)
        if c.size not in (1, channels):
            break
        if c.ndim == 1 and c.size == channels and channel_axis == 1:
            c = c.reshape(channels, 1, 1)  # a per-channel vector meant for NCHW
        y = _ONNX_ARITH[node.op_type](x, c) if node.input[0] == tensor else \
            _ONNX_ARITH[node.op_type](c, x)
        if y.shape != x.shape:
            break
        x, tensor = y, node.output[0]
        steps.append(node.op_type)
    if not steps:
        return None, "no sidecar, and no arithmetic with constants on its input"
    scale = np.moveaxis(x[1] - x[0], channel_axis - 1, -1).reshape(-1)
    offset = np.moveaxis(x[0], channel_axis - 1, -1).reshape(-1)
    return _from_affine(scale, offset, f"in-graph ONNX {', '.join(steps)} on the input")


# --- deciding the range ----------------------------------------------------------------------


def _from_affine(scale, offset, how: str) -> tuple[dict | None, str]:
    """The input range that leading ``y = scale * x + offset`` layers were written for: a
    slope that maps 0..255 onto a span of about 1 to 30 means raw pixels; a slope that maps
    0..1 onto such a span means 0..1 input. Anything else is not a range edgekit can name."""
    scale = np.asarray(scale, np.float64).reshape(-1)
    offset = np.asarray(offset, np.float64).reshape(-1)
    slope = float(np.mean(np.abs(scale)))
    if not np.all(np.isfinite(scale)) or np.any(scale == 0):
        return None, f"{how}: not an invertible scaling"
    lo, hi = np.minimum(offset, offset + 255 * scale), np.maximum(offset, offset + 255 * scale)
    if 0.9 <= slope * 255 <= 30 and np.all(lo > -30) and np.all(hi < 30):
        return named("raw", how), ""
    if 0.9 <= slope <= 30:
        return named("unit", how), ""
    return None, f"{how} scales by {slope:.3g}: not a pixel range edgekit recognises"


def for_timing(prep: dict | None) -> dict:
    """``prep``, or neutral values for a run that only times the model."""
    return prep or TIMING_ONLY

