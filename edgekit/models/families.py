"""The model zoo as data: one ``Template`` per family, one generator per template.

Names, default coefficients and capabilities live in ``edgekit.core.registry.FAMILIES``;
``get_spec`` reads them, checks the user's values and calls the generator registered for the
name. Sources of the tables: MobileNet v1 (Howard et al. 2017, Table 1), MobileNetV2
(Sandler et al. 2018, Table 2), MobileNetV3 (Howard et al. 2019, Tables 1-2, with the
keras.applications head), EfficientNet B0 and Lite (tensorflow/tpu efficientnet_builder.py,
efficientnet_lite_builder.py). No keras here.
"""

from __future__ import annotations

from typing import Any

from ..core.preprocessing import PREPROCESSING
from ..core.errors import BadInput
from ..core.registry import FAMILIES
from .spec import ArchSpec, Row, Template, check_multiplier, check_resolution, resolve, validate


def _pre(mean: list[float], std: list[float]) -> dict[str, Any]:
    """x = (pixel - mean) / std, pixels 0..255 in RGB order."""
    return {"mean": list(mean), "std": list(std), "channel_order": "RGB"}


# The named conventions live in one table (edgekit.core.preprocessing.PREPROCESSING).
MINUS_ONE_TO_ONE = _pre(PREPROCESSING["tf"]["mean"], PREPROCESSING["tf"]["std"])  # MobileNets
LITE_PREPROCESSING = _pre([127.0] * 3, [128.0] * 3)  # efficientnet_lite_builder.py
IMAGENET = _pre(PREPROCESSING["torch"]["mean"], PREPROCESSING["torch"]["std"])  # ImageNet x255


def dw(out: int, n: int = 1, s: int = 1) -> Row:
    return Row("dwsep", n, out, 3, s, act="relu6")


def ir(out: int, n: int = 1, s: int = 1, e: float = 6, k: int = 3, se: float = 0.0,
       act: str = "relu6") -> Row:
    return Row("mbconv", n, out, k, s, e, se, act)


MOBILENET_V1 = Template(
    stages=((dw(64),), (dw(128, 2, 2),), (dw(256, 2, 2),), (dw(512, 6, 2),), (dw(1024, 2, 2),)),
    stem=32, stem_act="relu6")

MOBILENET_V2 = Template(
    stages=((ir(16, e=1),), (ir(24, 2, 2),), (ir(32, 3, 2),), (ir(64, 4, 2),), (ir(96, 3),),
            (ir(160, 3, 2),), (ir(320),)),
    stem=32, stem_act="relu6", head=1280, head_rule="grow", head_act="relu6")

_HS = "hard_swish"
_V3 = dict(stem=16, stem_rule="fixed", stem_act=_HS, head_expand=6.0, head_act=_HS,
           pre_logits_rule="grow", se_rule="expanded_div")

MOBILENET_V3_LARGE = Template(
    stages=((ir(16, e=1, act="relu"),),
            (ir(24, s=2, e=4, act="relu"), ir(24, e=3, act="relu")),
            (ir(40, 3, 2, e=3, k=5, se=0.25, act="relu"),),
            (ir(80, s=2, e=6, act=_HS), ir(80, e=2.5, act=_HS), ir(80, 2, e=2.3, act=_HS)),
            (ir(112, 2, e=6, se=0.25, act=_HS),),
            (ir(160, 3, 2, e=6, k=5, se=0.25, act=_HS),)),
    pre_logits=1280, **_V3)

MOBILENET_V3_SMALL = Template(
    stages=((ir(16, s=2, e=1, se=0.25, act="relu"),),
            (ir(24, s=2, e=72 / 16, act="relu"), ir(24, e=88 / 24, act="relu")),
            (ir(40, s=2, e=4, k=5, se=0.25, act=_HS), ir(40, 2, e=6, k=5, se=0.25, act=_HS)),
            (ir(48, 2, e=3, k=5, se=0.25, act=_HS),),
            (ir(96, 3, 2, e=6, k=5, se=0.25, act=_HS),)),
    pre_logits=1024, **_V3)


def _efficientnet_stages(se: float, act: str) -> tuple[tuple[Row, ...], ...]:
    rows = [(16, 1, 1, 1, 3), (24, 2, 2, 6, 3), (40, 2, 2, 6, 5), (80, 3, 2, 6, 3),
            (112, 3, 1, 6, 5), (192, 4, 2, 6, 5), (320, 1, 1, 6, 3)]  # out, n, s, e, k
    return tuple((ir(c, n, s, e, k, se, act),) for c, n, s, e, k in rows)


EFFICIENTNET = Template(
    stages=_efficientnet_stages(0.25, "swish"), stem=32, stem_act="swish", head=1280,
    head_act="swish", se_rule="block_in", drop_connect=0.2)

EFFICIENTNET_LITE = Template(
    stages=_efficientnet_stages(0.0, "relu6"), stem=32, stem_rule="fixed", stem_act="relu6",
    head=1280, head_rule="fixed", head_act="relu6", fixed_depth_stages=(0, 6),
    drop_connect=0.2)


def _make(template: Template, name: str, kind: str, width: float, depth: float,
          resolution: int, classes: int, dropout: float, preprocessing: dict[str, Any],
          **extra: Any) -> ArchSpec:
    stem, blocks, head, pre = resolve(template, width, depth)
    return validate(ArchSpec(
        name=name, kind=kind, width=width, depth=depth, resolution=resolution,
        classes=classes, dropout=dropout, stem=stem,
        preprocessing=_pre(preprocessing["mean"], preprocessing["std"]),
        blocks=tuple(blocks), head=head, pre_logits=pre, template=template, **extra))


# --- generators: (name, width, depth, resolution, classes, dropout) -> ArchSpec ----------

def mobilenet_v1(name: str, **kw: Any) -> ArchSpec:
    return _make(MOBILENET_V1, name, "mobilenet_v1", preprocessing=MINUS_ONE_TO_ONE, **kw)


def mobilenet_v2(name: str, **kw: Any) -> ArchSpec:
    return _make(MOBILENET_V2, name, "mobilenet_v2", preprocessing=MINUS_ONE_TO_ONE,
                 bn_momentum=0.999, **kw)


def _v3(template: Template, name: str, kw: dict[str, Any]) -> ArchSpec:
    return _make(template, name, "mobilenet_v3", preprocessing=MINUS_ONE_TO_ONE,
                 bn_momentum=0.999, se_act="relu", se_gate="hard_sigmoid",
                 pre_logits_act=_HS, **kw)


def mobilenet_v3_small(name: str, **kw: Any) -> ArchSpec:
    return _v3(MOBILENET_V3_SMALL, name, kw)


def mobilenet_v3_large(name: str, **kw: Any) -> ArchSpec:
    return _v3(MOBILENET_V3_LARGE, name, kw)


def efficientnet(name: str, **kw: Any) -> ArchSpec:
    return _make(EFFICIENTNET, name, "efficientnet", preprocessing=IMAGENET,
                 se_act="swish", se_gate="sigmoid", **kw)


def efficientnet_lite(name: str, **kw: Any) -> ArchSpec:
    return _make(EFFICIENTNET_LITE, name, "efficientnet_lite", preprocessing=LITE_PREPROCESSING,
                 **kw)


# --- public entry points -----------------------------------------------------------------

def family_names() -> list[str]:
    return list(FAMILIES)


def get_spec(name: str, *, width: float | None = None, depth: float | None = None,
             resolution: int | None = None, classes: int = 1000,
             dropout: float | None = None) -> ArchSpec:
    """The resolved spec of family ``name``; None takes the family's default value.

    ``width``/``depth`` are absolute multipliers (efficientnet_b3 defaults to 1.2, 1.4, 300).
    """
    entry = FAMILIES.get_entry(name)
    caps = entry.caps
    width = caps["width"] if width is None else width
    depth = caps["depth"] if depth is None else depth
    resolution = caps["resolution"] if resolution is None else resolution
    dropout = caps.get("dropout", 0.2) if dropout is None else dropout
    check_multiplier("width", width)
    check_multiplier("depth", depth)
    check_resolution(resolution)
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 2:
        raise BadInput(f"classes must be an integer >= 2, got {classes!r}")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise BadInput(f"dropout must be in [0, 1), got {dropout!r}")
    return entry.load()(name, width=float(width), depth=float(depth), resolution=resolution,
                        classes=classes, dropout=float(dropout))


def from_template(template: Template, name: str, kind: str, resolution: int,
                  classes: int = 10, **extra: Any) -> ArchSpec:
    """A spec of a custom template at width/depth 1 (the calibration probes use this)."""
    return _make(template, name, kind, 1.0, 1.0, resolution, classes, 0.0,
                 preprocessing=MINUS_ONE_TO_ONE, **extra)
