"""Cost model, part 1: the *work* of a zoo spec, computed from the spec alone.

``spec_work(spec)`` lists every layer the builder (``edgekit.models.build``) would create that
does arithmetic — full convs, pointwise and depthwise convs, squeeze-excite convs, dense — with
its MACs, parameters, shapes, stride and kernel, using the same names and the same counting
rules as ``edgekit.evaluate.analyze`` (MACs of conv/depthwise/dense only; BN, activations, adds and
pooling are free). It imports no keras or tensorflow: a spec is evaluated in well under a
millisecond per block, so a scale search can afford thousands of candidates.

On top of the per-layer work: ``totals``, ``bn_params`` (so that layer params + BN params ==
keras ``count_params()``), ``peak_activation_bytes`` and ``weight_bytes`` per precision (BN
folded as TFLite does).

This is the "work" half of the cost model; the latency prediction (coefficients per runtime
and precision, fitted by ``edgekit calibrate``) is built on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.spec import ArchSpec, BlockSpec

KINDS = ("conv", "pointwise", "depthwise", "dense", "se")
PRECISIONS = ("fp32", "fp16", "int8", "dynamic")  # those the cost model has coefficients for
DYNAMIC_MIN_ELEMENTS = 1024  # TFLite dynamic-range quantization leaves smaller weights float


@dataclass(frozen=True)
class LayerWork:
    name: str  # the builder's layer name, e.g. "block2a_expand_conv"
    kind: str  # conv | pointwise | depthwise | dense | se
    macs: int
    params: int  # weights + bias of this layer only (no BN)
    in_shape: tuple[int, int, int]  # H, W, C
    out_shape: tuple[int, int, int]
    stride: int
    kernel: int

    @property
    def weights(self) -> int:
        """Weight elements (params without the bias)."""
        return self.params - self.bias

    @property
    def bias(self) -> int:
        """Bias elements the layer has in keras (SE convs and dense layers only)."""
        return self.out_shape[2] if self.kind in ("se", "dense") else 0


def _same(size: int, stride: int) -> int:
    return -(-size // stride)  # "same" padding: ceil(size / stride)


def _conv(name: str, hwc: tuple[int, int, int], cout: int, k: int, s: int,
          kind: str | None = None) -> LayerWork:
    h, w, cin = hwc
    out = (_same(h, s), _same(w, s), cout)
    kind = kind or ("pointwise" if k == 1 else "conv")
    weights = k * k * cin * cout
    bias = cout if kind == "se" else 0
    return LayerWork(name, kind, weights * out[0] * out[1], weights + bias, hwc, out, s, k)


def _dw(name: str, hwc: tuple[int, int, int], k: int, s: int) -> LayerWork:
    h, w, c = hwc
    out = (_same(h, s), _same(w, s), c)
    return LayerWork(name, "depthwise", k * k * c * out[0] * out[1], k * k * c, hwc, out, s, k)


def _dense(name: str, cin: int, cout: int) -> LayerWork:
    return LayerWork(name, "dense", cin * cout, cin * cout + cout, (1, 1, cin), (1, 1, cout),
                     1, 1)


def _se(b: BlockSpec, hwc: tuple[int, int, int]) -> list[LayerWork]:
    if not b.se_ch:
        return []
    c = hwc[2]
    return [_conv(b.name + "se_reduce", (1, 1, c), b.se_ch, 1, 1, "se"),
            _conv(b.name + "se_expand", (1, 1, b.se_ch), c, 1, 1, "se")]


def block_work(b: BlockSpec, hwc: tuple[int, int, int]) -> list[LayerWork]:
    """The work layers of one block, in graph order, given its input (H, W, C)."""
    n, out = b.name, []

    def add(layer: LayerWork) -> tuple[int, int, int]:
        out.append(layer)
        return layer.out_shape

    if b.kind == "conv":
        add(_conv(n + "conv", hwc, b.out_ch, b.kernel, b.stride))
    elif b.kind == "dwsep":
        x = add(_dw(n + "dwconv", hwc, b.kernel, b.stride))
        add(_conv(n + "project_conv", x, b.out_ch, 1, 1))
    elif b.kind == "mbconv":
        x = add(_conv(n + "expand_conv", hwc, b.mid_ch, 1, 1)) if b.expand else hwc
        x = add(_dw(n + "dwconv", x, b.kernel, b.stride))
        out += _se(b, x)
        add(_conv(n + "project_conv", x, b.out_ch, 1, 1))
    elif b.kind == "fused":
        if b.expand:
            x = add(_conv(n + "expand_conv", hwc, b.mid_ch, b.kernel, b.stride))
            out += _se(b, x)
            add(_conv(n + "project_conv", x, b.out_ch, 1, 1))
        else:
            out += _se(b, hwc)
            add(_conv(n + "project_conv", hwc, b.out_ch, b.kernel, b.stride))
    else:
        raise ValueError(f"{n}: unknown block kind {b.kind!r}")
    return out


def _blocks(spec: ArchSpec) -> list[BlockSpec]:
    return [spec.stem, *spec.blocks] + ([spec.head] if spec.head else [])


def spec_work(spec: ArchSpec) -> list[LayerWork]:
    """Every work layer of ``spec`` in graph order (batch 1)."""
    hwc, work = spec.input_shape, []
    for b in _blocks(spec):
        layers = block_work(b, hwc)
        work += layers
        hwc = next(x.out_shape for x in reversed(layers) if x.kind != "se")
    features = hwc[2]
    if spec.pre_logits:
        work.append(_dense("pre_logits", features, spec.pre_logits))
        features = spec.pre_logits
    work.append(_dense("logits", features, spec.classes))
    return work


def totals(work: list[LayerWork]) -> dict:
    """Sums over the layers: macs, params, and MACs per layer kind."""
    by_kind = {k: 0 for k in KINDS}
    for w in work:
        by_kind[w.kind] += w.macs
    return {"macs": sum(w.macs for w in work), "params": sum(w.params for w in work),
            "layers": len(work), "macs_by_kind": by_kind}


def _bn_channels(spec: ArchSpec) -> list[int]:
    """Channels of every BatchNormalization: one after each non-SE conv and depthwise."""
    return [w.out_shape[2] for w in spec_work(spec)
            if w.kind in ("conv", "pointwise", "depthwise")]


def bn_params(spec: ArchSpec) -> int:
    """Keras BatchNormalization variables (gamma, beta, moving mean and variance)."""
    return 4 * sum(_bn_channels(spec))


def peak_activation_bytes(spec: ArchSpec, bytes_per_value: int = 4) -> int:
    """Largest set of activations alive at once, batch 1, per work layer: its input and output,
    the block input when the block ends in a residual add (unless it *is* the layer's input),
    and inside squeeze-excite the feature map that waits for the gate."""
    hwc, peak = spec.input_shape, 0
    for b in _blocks(spec):
        layers, gated = block_work(b, hwc), 0
        for i, w in enumerate(layers):
            live = _n(w.in_shape) + _n(w.out_shape)
            if b.residual and i > 0:  # the skip input waits for the add
                live += _n(hwc)
            if w.kind == "se":  # the map to be gated waits for the sigmoid
                gated = gated or _n(_full(b, hwc, w))
                live += gated
            peak = max(peak, live)
        hwc = next(x.out_shape for x in reversed(layers) if x.kind != "se")
    return peak * bytes_per_value


def _full(b: BlockSpec, hwc, w: LayerWork) -> tuple[int, int, int]:
    """The full-resolution map a squeeze-excite layer gates (shape of its channels)."""
    c = w.in_shape[2] if w.name.endswith("se_reduce") else w.out_shape[2]
    if b.kind == "fused" and not b.expand:
        return (hwc[0], hwc[1], c)
    return (_same(hwc[0], b.stride), _same(hwc[1], b.stride), c)


def _n(shape) -> int:
    return shape[0] * shape[1] * shape[2]


def weight_bytes(spec: ArchSpec, precision: str = "fp32") -> int:
    """Bytes of weights in a converted (TFLite-style) model, BN folded into the convs: every
    conv without a bias gains one of Cout. fp32: 4 B a value; fp16: 2 B; int8: 1 B weights,
    int32 biases, plus a float32 scale and an int64 zero point per output channel for both;
    dynamic: int8 weights (float32 when smaller than 1024 values) with per-channel scales,
    float32 biases. Graph structure and activation quantization parameters are not counted."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (expected one of {PRECISIONS})")
    total = 0
    for w in spec_work(spec):
        cout = w.out_shape[2]
        weights = w.weights
        if precision == "fp32":
            total += 4 * (weights + cout)
        elif precision == "fp16":
            total += 2 * (weights + cout)
        elif precision == "int8":
            total += weights + 4 * cout + 2 * 12 * cout
        elif weights < DYNAMIC_MIN_ELEMENTS:  # dynamic, small: stays float
            total += 4 * (weights + cout)
        else:  # dynamic: int8 weights, per-channel scale + zero point, float bias
            total += weights + 12 * cout + 4 * cout
    return total


__all__ = ["LayerWork", "block_work", "bn_params", "peak_activation_bytes", "spec_work",
           "totals", "weight_bytes"]
