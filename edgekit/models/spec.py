"""Architecture as data: the frozen spec types, compound scaling and JSON round-trip.

A family is a ``Template``: stages of ``Row``s (unscaled block descriptions) plus the rules
that say how stem, head and squeeze-excite channels follow the width multiplier.
``resolve`` turns a template and (width, depth, resolution) into an ``ArchSpec`` that lists
every block with concrete channel counts; the builder (build.py) reads only those resolved
blocks, so a pruned spec with arbitrary per-layer channels builds the same way.

No keras here: this module imports instantly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..core.errors import BadInput

KINDS = ("conv", "dwsep", "mbconv", "fused")
ACTIVATIONS = ("relu", "relu6", "swish", "hard_swish", "sigmoid", "hard_sigmoid")
PADDINGS = ("same", "symmetric")
SCHEMA = "edgekit.archspec/1"


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor``, never more than 10% below ``value``.

    The rule of the EfficientNet/MobileNet references (keras ``round_filters`` / ``_depth``).
    """
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


# --- the unscaled description of a family ------------------------------------------------

@dataclass(frozen=True)
class Row:
    """``repeats`` blocks of one kind; the first has ``stride``, the others stride 1."""

    kind: str
    repeats: int
    out: int  # output channels at width 1.0
    kernel: int = 3
    stride: int = 1
    expand: float = 1.0  # expansion ratio (mbconv, fused); 1 = no expand conv
    se: float = 0.0  # squeeze-excite ratio, 0 = none
    act: str = "relu6"


@dataclass(frozen=True)
class Template:
    """Stages of rows plus the channel rules of a family (all plain data)."""

    stages: tuple[tuple[Row, ...], ...]
    stem: int = 32
    stem_rule: str = "scale"  # scale | fixed | grow (scaled only when width > 1)
    stem_act: str = "relu6"
    head: int = 0  # 1x1 conv before pooling; 0 = none
    head_rule: str = "scale"
    head_expand: float = 0.0  # if > 0: head = make_divisible(last channels * head_expand)
    pre_logits: int = 0  # dense (bias, activation) after pooling; 0 = none
    pre_logits_rule: str = "grow"
    head_act: str = "relu6"
    se_rule: str = "block_in"  # block_in: max(1, int(in*r)) | expanded_div: make_divisible(mid*r)
    fixed_depth_stages: tuple[int, ...] = ()  # stage indices whose repeats are not scaled
    residual: bool = True  # mbconv/fused add a skip when stride 1 and in == out
    drop_connect: float = 0.0  # stochastic-depth rate of the last block (linear ramp)
    divisor: int = 8


# --- the resolved spec the builder reads -------------------------------------------------

@dataclass(frozen=True)
class BlockSpec:
    """One block with concrete channels. ``name`` prefixes its layer names."""

    name: str  # e.g. "block2a_", "stem_", "top_"
    kind: str  # conv | dwsep | mbconv | fused
    in_ch: int
    mid_ch: int  # expanded channels (== in_ch when there is no expansion)
    out_ch: int
    kernel: int = 3
    stride: int = 1
    expand: bool = False  # mbconv/fused: has an expand conv (in_ch -> mid_ch)
    se_ch: int = 0  # squeeze-excite bottleneck channels, 0 = none
    act: str = "relu6"
    residual: bool = False
    drop_path: float = 0.0  # stochastic-depth rate of the residual branch


@dataclass(frozen=True)
class ArchSpec:
    name: str  # family name, e.g. "efficientnet_b3"
    kind: str  # mobilenet_v1 | mobilenet_v2 | mobilenet_v3 | efficientnet | efficientnet_lite
    width: float
    depth: float
    resolution: int
    classes: int
    dropout: float
    preprocessing: dict[str, Any]
    stem: BlockSpec
    blocks: tuple[BlockSpec, ...]
    head: BlockSpec | None
    pre_logits: int
    template: Template
    bn_eps: float = 1e-3
    bn_momentum: float = 0.99
    se_act: str = "relu"  # activation inside squeeze-excite
    se_gate: str = "sigmoid"
    pre_logits_act: str = "hard_swish"
    # How strided convs pad: "same" (TensorFlow: the extra pixel at the bottom/right) or
    # "symmetric" (PyTorch: kernel//2 on every side). Checkpoints from torchvision need the
    # latter to reproduce their outputs; the output sizes are the same for odd kernels.
    padding: str = "same"

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.resolution, self.resolution, 3)

    @property
    def features(self) -> int:
        """Channels that reach global pooling."""
        return self.head.out_ch if self.head else (self.blocks[-1].out_ch if self.blocks
                                                    else self.stem.out_ch)


# --- scaling -----------------------------------------------------------------------------

def _channels(base: int, rule: str, width: float, divisor: int) -> int:
    if rule == "fixed" or (rule == "grow" and width <= 1.0):
        return base
    return make_divisible(base * width, divisor)


def scale_repeats(repeats: list[int], depth: float) -> list[int]:
    """Scale a stage's repeats: total rounded up (ceil), spread back over its rows.

    A one-row stage gets exactly ``ceil(n * depth)`` (EfficientNet ``round_repeats``);
    every row keeps at least one block.
    """
    total, target = sum(repeats), int(math.ceil(sum(repeats) * depth))
    scaled = []
    for n in reversed(repeats):
        k = max(1, round(n / total * target))
        scaled.append(k)
        total, target = total - n, target - k
    return scaled[::-1]


def _se_channels(t: Template, row: Row, in_ch: int, mid_ch: int) -> int:
    if row.se <= 0:
        return 0
    if t.se_rule == "block_in":
        return max(1, int(in_ch * row.se))
    return make_divisible(mid_ch * row.se, t.divisor)


def _stage_blocks(t: Template, s: int, rows: tuple[Row, ...], in_ch: int, width: float,
                  depth: float) -> list[BlockSpec]:
    counts = [r.repeats for r in rows]
    counts = counts if s in t.fixed_depth_stages else scale_repeats(counts, depth)
    blocks = []
    for row, n in zip(rows, counts):
        out = make_divisible(row.out * width, t.divisor)
        for _ in range(n):
            mid = in_ch if row.expand == 1 else make_divisible(in_ch * row.expand, t.divisor)
            stride = row.stride if _ == 0 else 1
            residual = (t.residual and row.kind in ("mbconv", "fused") and stride == 1
                        and in_ch == out)
            name = f"block{s + 1}{_letters(len(blocks))}_"
            blocks.append(BlockSpec(name, row.kind, in_ch, mid, out, row.kernel, stride,
                                    row.expand != 1, _se_channels(t, row, in_ch, mid),
                                    row.act, residual))
            in_ch = out
    return blocks


def _letters(i: int) -> str:
    """0 -> a, 25 -> z, 26 -> ba ... (keras uses chr(97 + j); deep stages need more)."""
    return chr(97 + i) if i < 26 else _letters(i // 26) + chr(97 + i % 26)


def resolve(t: Template, width: float, depth: float) -> tuple[BlockSpec, list[BlockSpec],
                                                                 BlockSpec | None, int]:
    """(stem, blocks, head, pre_logits) of template ``t`` at ``width`` and ``depth``."""
    stem_ch = _channels(t.stem, t.stem_rule, width, t.divisor)
    stem = BlockSpec("stem_", "conv", 3, 3, stem_ch, 3, 2, act=t.stem_act)
    blocks, in_ch = [], stem_ch
    for s, rows in enumerate(t.stages):
        blocks += _stage_blocks(t, s, rows, in_ch, width, depth)
        in_ch = blocks[-1].out_ch
    blocks = [replace(b, drop_path=round(t.drop_connect * i / len(blocks), 6))
              if b.residual and t.drop_connect else b for i, b in enumerate(blocks)]
    head = None
    if t.head or t.head_expand:
        head_ch = (make_divisible(in_ch * t.head_expand, t.divisor) if t.head_expand
                   else _channels(t.head, t.head_rule, width, t.divisor))
        head = BlockSpec("top_", "conv", in_ch, in_ch, head_ch, 1, 1, act=t.head_act)
    pre = _channels(t.pre_logits, t.pre_logits_rule, width, t.divisor) if t.pre_logits else 0
    return stem, blocks, head, pre


def scale(spec: ArchSpec, width: float = 1.0, depth: float = 1.0,
          resolution: int | None = None) -> ArchSpec:
    """A new spec with width and depth multiplied by ``width``/``depth`` (relative to
    ``spec``) and the given input ``resolution`` (None keeps it). Pure: ``spec`` is unchanged.

    Channels are recomputed from the family template at the product multipliers, so
    scaling never compounds rounding. A spec whose blocks were edited (pruned) cannot be
    rescaled: its per-layer channels would be lost.
    """
    check_multiplier("width", width)
    check_multiplier("depth", depth)
    if resolution is not None:
        check_resolution(resolution)
    if resolve(spec.template, spec.width, spec.depth) != (spec.stem, list(spec.blocks),
                                                            spec.head, spec.pre_logits):
        raise BadInput(f"spec '{spec.name}' has edited per-layer channels (pruned?); "
                       "rescale the family spec instead")
    w, d = round(spec.width * width, 6), round(spec.depth * depth, 6)
    stem, blocks, head, pre = resolve(spec.template, w, d)
    return replace(spec, width=w, depth=d, resolution=resolution or spec.resolution,
                   stem=stem, blocks=tuple(blocks), head=head, pre_logits=pre)


# --- validation --------------------------------------------------------------------------

def check_multiplier(what: str, value: float) -> None:
    if not isinstance(value, (int, float)) or not 0 < value <= 10:
        raise BadInput(f"{what} multiplier must be in (0, 10], got {value!r}")


def check_resolution(value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 32 <= value <= 1024:
        raise BadInput(f"resolution must be an integer in [32, 1024], got {value!r}")


def validate(spec: ArchSpec) -> ArchSpec:
    """Check that channels chain and every field is usable; returns ``spec``."""
    check_resolution(spec.resolution)
    if not isinstance(spec.classes, int) or spec.classes < 2:
        raise BadInput(f"classes must be an integer >= 2, got {spec.classes!r}")
    if not 0 <= spec.dropout < 1:
        raise BadInput(f"dropout must be in [0, 1), got {spec.dropout!r}")
    if spec.padding not in PADDINGS:
        raise BadInput(f"padding must be one of {', '.join(PADDINGS)}, got {spec.padding!r}")
    chain = [spec.stem, *spec.blocks] + ([spec.head] if spec.head else [])
    prev = 3
    for b in chain:
        if b.kind not in KINDS or b.act not in ACTIVATIONS:
            raise BadInput(f"{b.name}: unknown kind '{b.kind}' or activation '{b.act}'")
        if min(b.in_ch, b.mid_ch, b.out_ch, b.kernel, b.stride) < 1 or b.se_ch < 0:
            raise BadInput(f"{b.name}: channels, kernel and stride must be positive")
        if b.in_ch != prev:
            raise BadInput(f"{b.name}: takes {b.in_ch} channels but receives {prev}")
        if b.kind in ("conv", "dwsep") and (b.mid_ch != b.in_ch or b.expand or b.se_ch):
            raise BadInput(f"{b.name}: a {b.kind} block has no expansion or squeeze-excite")
        if not b.expand and b.mid_ch != b.in_ch:
            raise BadInput(f"{b.name}: mid_ch must equal in_ch without an expand conv")
        if b.residual and (b.stride != 1 or b.in_ch != b.out_ch):
            raise BadInput(f"{b.name}: a residual block needs stride 1 and in == out")
        prev = b.out_ch
    return spec


# --- JSON round-trip ---------------------------------------------------------------------

def spec_to_dict(spec: ArchSpec) -> dict[str, Any]:
    """A JSON-able dict (lists, not tuples) that ``spec_from_dict`` reads back."""
    d = _lists(asdict(spec))
    d["input_shape"] = list(spec.input_shape)
    return {"schema": SCHEMA, **d}


def spec_from_dict(d: dict[str, Any]) -> ArchSpec:
    if d.get("schema") != SCHEMA:
        raise BadInput(f"not an edgekit architecture spec (schema {d.get('schema')!r})")
    d = {k: v for k, v in d.items() if k not in ("schema", "input_shape")}
    try:
        t = dict(d.pop("template"))
        t["stages"] = tuple(tuple(Row(**r) for r in st) for st in t["stages"])
        t["fixed_depth_stages"] = tuple(t.get("fixed_depth_stages", ()))
        head, stem, blocks = d.pop("head"), d.pop("stem"), d.pop("blocks")
        spec = ArchSpec(**d, template=Template(**t), stem=BlockSpec(**stem),
                        blocks=tuple(BlockSpec(**b) for b in blocks),
                        head=BlockSpec(**head) if head else None)
    except (KeyError, TypeError) as e:
        raise BadInput(f"malformed architecture spec: {e}") from None
    return validate(spec)


def _lists(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_lists(v) for v in x]
    return x


__all__ = ["ArchSpec", "BlockSpec", "Row", "Template", "make_divisible", "resolve", "scale",
           "scale_repeats", "spec_from_dict", "spec_to_dict", "validate"]
