"""Structured channel pruning: remove whole filters so the exported model has fewer MACs.

A *group* is the set of output channels of one Conv2D, followed through the layers that act
on each channel alone (batch norm, activations, padding, depthwise convolution, pooling,
squeeze-excite) to the layers that read them as inputs (a Conv2D or Dense). Removing channel c
removes it everywhere in the group: the producer's filter c, the batch-norm and depthwise
entries c, the squeeze-excite gate's filter c, and input c of the readers. A group whose
channels reach an Add (a residual connection), a Concatenate or the model output is tied to
channels elsewhere and is skipped with that reason. In MobileNetV2/EfficientNet this prunes
the expansion channels of every inverted-residual block (most of the MACs), the stem, the head
conv and the pointwise channels of blocks without a residual.

Importance (``criterion``):
- ``bn`` (default): |gamma| of each batch norm in the group, each divided by its layer's mean
  and multiplied together (Liu et al. 2017, "Network Slimming"). A batch norm rescales every
  channel it normalises, so the norm of the filter before it says nothing about how large the
  channel's output is; gamma does.
- ``l1`` / ``l2``: the norm of the producer's filter (Li et al. 2017, "Pruning Filters for
  Efficient ConvNets"), for groups without batch norm or by choice.

Every group loses the same share of channels (``ratio``), rounded as the zoo rounds widths
(multiples of ``round_to``, never more than 10% below the exact count), so kernels keep the
channel tiles that XNNPACK and GPU delegates vectorise over. The thinner model is the zoo
spec with the new channel counts, built by the same builder, when the input came from the zoo;
otherwise (keras.applications and other functional models) its Keras config with the new
filter counts. The kept weights are copied in, then batch-norm statistics are re-estimated on
training images (channels that fed a batch norm are gone, so its running mean and variance
no longer match; Li et al. 2020, "EagleEye", adaptive BN).
"""

from __future__ import annotations

import copy
import fnmatch
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from ..core.errors import BadInput
from ..models.load import import_keras
from ..models.spec import ArchSpec, make_divisible

CRITERIA = ("bn", "l1", "l2")
# layers that act on each channel alone
_PASS = {"BatchNormalization", "Activation", "ReLU", "ZeroPadding2D", "Dropout",
         "SpatialDropout2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "MaxPooling2D",
         "AveragePooling2D", "Identity", "LeakyReLU", "ELU"}
# element-wise operations that are per-channel when the other operand is a number
_SCALAR_OPS = {"Add", "Multiply", "Subtract", "Divide", "TrueDivide", "Maximum", "Minimum"}
# per layer class: for each weight, which axis each role slices
_AXES: dict[str, list[dict[str, int]]] = {
    "Conv2D": [{"in": 2, "out": 3}, {"out": 0}],
    "DepthwiseConv2D": [{"chan": 2}, {"chan": 0}],
    "BatchNormalization": [{"chan": 0}] * 4,
    "Dense": [{"in": 0}, {}],
}


@dataclass
class _Node:
    cls: str
    config: dict
    inputs: list[str]  # producing layers of the tensor arguments, in order
    scalar: bool  # called with a number among its arguments
    calls: int


@dataclass
class Group:
    producer: str
    channels: int
    roles: dict[str, str] = field(default_factory=dict)  # layer -> out | chan | in | reshape
    skip: str | None = None
    keep: np.ndarray | None = None  # indices of the kept channels, ascending
    criterion: str | None = None

    def record(self) -> dict:
        d = {"producer": self.producer, "channels": self.channels}
        if self.skip:
            return {**d, "skipped": self.skip}
        return {**d, "kept": int(len(self.keep)), "criterion": self.criterion,
                "layers": sorted(self.roles)}


def _graph(model) -> tuple[dict[str, _Node], dict[str, list[str]], set[str]]:
    """Layers of a functional model read from its (public) config: inputs, consumers,
    and the layers whose output is a model output."""
    cfg = model.get_config()
    nodes, consumers = {}, defaultdict(list)
    for layer in cfg["layers"]:
        tensors, scalar = [], False
        for call in layer.get("inbound_nodes", []):
            found, has_num = _tensors(call.get("args", [])), _numbers(call.get("args", []))
            tensors += found
            scalar = scalar or has_num
        nodes[layer["name"]] = _Node(layer["class_name"], layer["config"], tensors, scalar,
                                     len(layer.get("inbound_nodes", [])))
        for src in dict.fromkeys(tensors):
            consumers[src].append(layer["name"])
    outputs = {o[0] for o in _flat_history(cfg.get("output_layers", []))}
    return nodes, consumers, outputs


def _tensors(args) -> list[str]:
    if isinstance(args, dict):
        if args.get("class_name") == "__keras_tensor__":
            return [args["config"]["keras_history"][0]]
        return [t for v in args.values() for t in _tensors(v)]
    if isinstance(args, (list, tuple)):
        return [t for v in args for t in _tensors(v)]
    return []


def _numbers(args) -> bool:
    return any(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)


def _flat_history(x) -> list:
    if isinstance(x, list) and len(x) == 3 and isinstance(x[0], str):
        return [x]
    return [h for v in (x or []) for h in _flat_history(v)]


def _spatial(model, name: str) -> int:
    """Pixels of the output of layer or operation ``name`` (1 for a vector)."""
    op = next(o for o in model.operations if o.name == name)
    shape = op.output.shape
    return int(np.prod(shape[1:-1])) if len(shape) == 4 else 1


def channel_groups(model) -> list[Group]:
    """Every Conv2D (not grouped) working on a feature map, as a Group; those that cannot be
    pruned carry ``skip``. Convs on globally pooled vectors (squeeze-excite, a 1x1 head after
    pooling) are not candidates: they hold a negligible share of the MACs."""
    nodes, consumers, outputs = _graph(model)
    return [_follow(model, nodes, consumers, outputs, name) for name, node in nodes.items()
            if node.cls == "Conv2D" and node.config.get("groups", 1) == 1
            and not _pooled(nodes, name)]


def _pooled(nodes, name: str) -> bool:
    """Whether ``name`` reads a globally pooled vector (through 1x1 convs and activations)."""
    seen = set()
    while name not in seen and nodes[name].inputs:
        seen.add(name)
        name = nodes[name].inputs[0]
        node = nodes[name]
        if node.cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            return True
        if node.cls not in ("Activation", "ReLU", "Reshape", "Flatten", "Dropout", "Conv2D",
                            "Dense") and not (node.cls in _SCALAR_OPS and node.scalar):
            return False
    return False


def _follow(model, nodes, consumers, outputs, producer: str) -> Group:
    g = Group(producer, int(nodes[producer].config["filters"]), {producer: "out"})
    if nodes[producer].calls != 1:
        g.skip = "a shared layer"
        return g
    stack = [producer]
    while stack and not g.skip:
        here = stack.pop()
        if here in outputs:
            g.skip = f"its channels are a model output ('{here}')"
            break
        for c in consumers.get(here, []):
            if c in g.roles:
                continue
            node = nodes[c]
            role = _role(model, nodes, node, c, here, g)
            if isinstance(role, str) and role.startswith("skip:"):
                g.skip = role[5:]
                break
            g.roles[c] = role
            if role != "in":
                stack.append(c)
    return g


def _role(model, nodes, node: _Node, name: str, came_from: str, g: Group) -> str:
    cls, cfg = node.cls, node.config
    if node.calls != 1:
        return f"skip:its channels reach the shared layer '{name}'"
    if cls == "Conv2D":
        return "in" if cfg.get("groups", 1) == 1 else f"skip:its channels reach grouped conv '{name}'"
    if cls == "Dense":
        return "in"
    if cls == "DepthwiseConv2D":
        return "chan" if cfg.get("depth_multiplier", 1) == 1 else \
            f"skip:depthwise '{name}' has a depth multiplier"
    if cls in _PASS or (cls in _SCALAR_OPS and node.scalar and len(node.inputs) == 1):
        return "chan"
    if cls == "Reshape" and all(d == 1 for d in cfg["target_shape"][:-1]) \
            and cfg["target_shape"][-1] == g.channels:
        return "reshape"
    if cls == "Flatten" and _spatial(model, came_from) == 1:
        return "chan"
    if cls == "Multiply" and len(node.inputs) == 2:
        gate = _gate(nodes, [i for i in node.inputs if i != came_from])
        if gate:
            for layer, role in gate.items():
                g.roles[layer] = role
            return "chan"
        return f"skip:its channels reach Multiply '{name}' whose other input is not a gate"
    why = " (a residual connection)" if cls == "Add" else ""
    return f"skip:its channels reach {cls} '{name}'{why}"


def _gate(nodes, other: list[str]) -> dict[str, str] | None:
    """The squeeze-excite gate feeding a Multiply: the 1x1 Conv2D making one value per
    channel, with the activations after it. None when ``other`` is something else."""
    if len(other) != 1:
        return None
    roles, name = {}, other[0]
    while name in nodes and (nodes[name].cls in _PASS - {"BatchNormalization"} or (
            nodes[name].cls in _SCALAR_OPS and nodes[name].scalar)):
        roles[name] = "chan"
        name = nodes[name].inputs[0]
    if name in nodes and nodes[name].cls == "Conv2D" and nodes[name].config.get("groups", 1) == 1:
        roles[name] = "out"
        return roles
    return None


# --- choosing the channels -------------------------------------------------------------------

def importance(model, g: Group, criterion: str) -> tuple[np.ndarray, str]:
    """One score per channel of ``g`` (higher = keep) and the criterion really used."""
    if criterion == "bn":
        score = np.ones(g.channels)
        found = False
        layers = {layer.name: layer for layer in model.layers}
        for name, role in g.roles.items():
            layer = layers.get(name)  # None for operations such as x + 3 (not layers)
            if role == "chan" and layer.__class__.__name__ == "BatchNormalization" and layer.scale:
                gamma = np.abs(layer.gamma.numpy())
                score *= gamma / max(float(gamma.mean()), 1e-12)
                found = True
        if found:
            return score, "bn"
        criterion = "l1"  # no batch norm to read: fall back to the filter norm
    kernel = model.get_layer(g.producer).kernel.numpy()
    order = 1 if criterion == "l1" else 2
    return np.linalg.norm(kernel.reshape(-1, kernel.shape[-1]), ord=order, axis=0), criterion


def kept_count(channels: int, ratio: float, round_to: int) -> int:
    exact = channels * (1.0 - ratio)
    n = make_divisible(exact, round_to) if round_to > 1 else max(1, int(round(exact)))
    return min(channels, n)


def plan(model, ratio: float, criterion: str = "bn", round_to: int = 8,
         exclude: Sequence[str] = ()) -> list[Group]:
    """The groups of ``model`` with the channels each keeps (``keep``) or why it is skipped."""
    if not 0 < ratio < 1:
        raise BadInput(f"--ratio must be between 0 and 1 (got {ratio})")
    if criterion not in CRITERIA:
        raise BadInput(f"unknown --criterion '{criterion}' (known: {', '.join(CRITERIA)})")
    if round_to < 1:
        raise BadInput(f"--round-to must be at least 1 (got {round_to})")
    groups = channel_groups(model)
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(g.producer, pattern) for g in groups):
            raise BadInput(f"--exclude '{pattern}' names no prunable conv of the model")
    for g in groups:
        if g.skip:
            continue
        if any(fnmatch.fnmatchcase(g.producer, p) for p in exclude):
            g.skip = "excluded by --exclude"
            continue
        n = kept_count(g.channels, ratio, round_to)
        if n >= g.channels:
            g.skip = f"rounding to multiples of {round_to} keeps all {g.channels} channels"
            continue
        score, g.criterion = importance(model, g, criterion)
        g.keep = np.sort(np.argsort(-score, kind="stable")[:n])
    if not any(g.keep is not None for g in groups):
        raise BadInput("no channel group of the model can be pruned at this ratio "
                       "(all are tied by residual connections, excluded or too small)")
    return groups


# --- building the thinner model --------------------------------------------------------------

def _slices(groups: Sequence[Group]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for g in groups:
        if g.keep is not None:
            for layer, role in g.roles.items():
                out[layer][role] = g.keep
    return out


def thin_spec(spec: ArchSpec, counts: dict[str, int]) -> ArchSpec:
    """``spec`` with the channel counts of pruned producers (layer names of the builder)."""
    chain = [spec.stem, *spec.blocks] + ([spec.head] if spec.head else [])
    used = set()
    for i, b in enumerate(chain):
        if b.expand and b.name + "expand_conv" in counts:
            chain[i] = replace(chain[i], mid_ch=counts[b.name + "expand_conv"])
            used.add(b.name + "expand_conv")
        out_layer = b.name + ("conv" if b.kind == "conv" else "project_conv")
        if out_layer in counts:
            n = counts[out_layer]
            used.add(out_layer)
            chain[i] = replace(chain[i], out_ch=n)
            if i + 1 < len(chain):
                nxt = chain[i + 1]
                chain[i + 1] = replace(nxt, in_ch=n, mid_ch=nxt.mid_ch if nxt.expand else n)
    if set(counts) - used:
        raise BadInput(f"the zoo spec has no place for pruned layer(s) {sorted(set(counts) - used)}")
    head = chain[-1] if spec.head else None
    blocks = chain[1:-1] if spec.head else chain[1:]
    return replace(spec, stem=chain[0], blocks=tuple(blocks), head=head)


def thin_model(model, groups: Sequence[Group], spec: ArchSpec | None = None):
    """(thinner Keras model with the kept weights, its spec or None)."""
    keras = import_keras()
    slices = _slices(groups)
    counts = {g.producer: int(len(g.keep)) for g in groups if g.keep is not None}
    if spec is not None:
        from ..models.build import build_model

        spec = thin_spec(spec, counts)
        new = build_model(spec, seed=None)
    else:
        cfg = copy.deepcopy(model.get_config())
        for layer in cfg["layers"]:
            layer.pop("build_config", None)  # it pins the old input shapes
            s = slices.get(layer["name"], {})
            if "out" in s:
                layer["config"]["filters"] = int(len(s["out"]))
            if "reshape" in s:
                layer["config"]["target_shape"] = [*layer["config"]["target_shape"][:-1],
                                                   int(len(s["reshape"]))]
        new = keras.Model.from_config(cfg)
    for layer in new.layers:
        weights = model.get_layer(layer.name).get_weights()
        roles = slices.get(layer.name)
        if roles and weights:
            axes = _AXES[layer.__class__.__name__]
            weights = [_take(w, axes[i] if i < len(axes) else {}, roles)
                       for i, w in enumerate(weights)]
        layer.set_weights(weights)
    return new, spec


def _take(w: np.ndarray, axes: dict[str, int], roles: dict[str, np.ndarray]) -> np.ndarray:
    for role, axis in axes.items():
        if role in roles:
            w = np.take(w, roles[role], axis=axis)
    return w


def recalibrate_bn(model, batches: Any, n_batches: int) -> None:
    """Re-estimate every batch norm's moving mean and variance as the plain average over
    ``n_batches`` training batches (momentum (k-1)/k at batch k), dropout off. Eager calls:
    Keras reads ``momentum`` and ``rate`` at call time."""
    keras = import_keras()
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    drops = [l for l in model.layers if isinstance(l, keras.layers.Dropout)]
    saved = [(l.momentum, l.trainable) for l in bns], [l.rate for l in drops]
    try:
        for layer in drops:
            layer.rate = 0.0
        for layer in bns:  # a frozen batch norm runs in inference mode and updates nothing
            layer.trainable = True
        for k, (x, _) in enumerate(batches, start=1):
            if k > n_batches:
                break
            for layer in bns:
                layer.momentum = (k - 1) / k
            model(x, training=True)
    finally:
        for layer, (m, t) in zip(bns, saved[0]):
            layer.momentum, layer.trainable = m, t
        for layer, r in zip(drops, saved[1]):
            layer.rate = r
