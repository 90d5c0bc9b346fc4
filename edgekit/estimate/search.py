"""``edgekit scale``: the largest MobileNet/EfficientNet a device's budget affords.

The search enumerates (width, resolution) for MobileNets and (width, depth, resolution) for
EfficientNet and EfficientNet-Lite — along the compound-scaling line (depth 1.2^phi, width
1.1^phi, resolution 1.15^phi; Tan & Le 2019) and off it on a grid — evaluates every candidate
with the cost model (latency from ``edgekit.estimate.latency``, peak activations and weight bytes from
``edgekit.estimate.work``), keeps those that meet every budget and ranks them by the accuracy proxy
(``edgekit.estimate.accuracy``). Nothing is built until the user asks for the winner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from .work import peak_activation_bytes, spec_work, totals, weight_bytes
from ..core.errors import BadInput
from .latency import LatencyModel
from ..models.spec import ArchSpec
from .accuracy import Proxy, proxy_accuracy

# family group -> the zoo family its candidates are scaled from
GROUPS = {"mobilenet_v1": "mobilenet_v1", "mobilenet_v2": "mobilenet_v2",
          "mobilenet_v3_small": "mobilenet_v3_small", "mobilenet_v3_large": "mobilenet_v3_large",
          "efficientnet": "efficientnet_b0", "efficientnet_lite": "efficientnet_lite0"}
MOBILENET_WIDTHS = (0.25, 0.35, 0.5, 0.6, 0.75, 0.85, 1.0, 1.1, 1.25, 1.4)
MOBILENET_RESOLUTIONS = (96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256)
PHIS = tuple(x / 4 for x in range(-8, 25))  # -2 .. 6 in steps of 0.25
EFF_WIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
EFF_DEPTHS = (0.8, 1.0, 1.2, 1.6, 2.0, 2.6, 3.1)
EFF_RESOLUTIONS = (128, 160, 192, 224, 240, 260, 280, 300, 340, 380, 456, 528, 600)
# TFLite file size vs the cost model's weight bytes (graph structure, quantization params):
# measured on MobileNetV2 0.35@96 (edgekit zoo) fp32 +2.6%, int8 +7.6%
SIZE_OVERHEAD = {"fp32": 1.027, "fp16": 1.05, "int8": 1.08, "dynamic": 1.05, "int16x8": 1.08}
ACTIVATION_BYTES = {"fp32": 4, "fp16": 4, "int8": 1, "dynamic": 4, "int16x8": 2}  # on CPU


@dataclass
class SearchBudget:
    """The limits one search applies (each option, else the device's default budget)."""

    latency_ms: float
    memory_mb: float
    size_mb: float


@dataclass
class Candidate:
    group: str
    family: str
    width: float
    depth: float
    resolution: int
    spec: ArchSpec
    phi: Optional[float]
    macs: int
    params: int
    latency_ms: float
    latency_error_pct: float
    memory_mb: float
    size_mb: float
    proxy: Proxy
    misses: dict[str, str] = field(default_factory=dict)  # budget -> how far off
    excess: float = 0.0  # worst relative excess over a budget (0 when it fits)

    @property
    def fits(self) -> bool:
        return not self.misses

    def as_dict(self) -> dict[str, Any]:
        return {"family": self.family, "group": self.group, "width": self.width,
                "depth": self.depth, "resolution": self.resolution, "phi": self.phi,
                "macs": self.macs, "params": self.params,
                "latency_ms": round(self.latency_ms, 3),
                "latency_error_pct": round(self.latency_error_pct, 1),
                "peak_activation_mb": round(self.memory_mb, 3), "size_mb": round(self.size_mb, 3),
                "accuracy_proxy": self.proxy.as_dict(), "fits": self.fits, "misses": self.misses}


def group_of(name: str) -> str:
    """Accepts a group (efficientnet_lite) or a family of it (efficientnet_lite3)."""
    if name in GROUPS:
        return name
    for group in ("efficientnet_lite", "efficientnet"):
        if name.startswith(group):
            return group
    if name == "mobilenet_v3":
        raise BadInput("say mobilenet_v3_small or mobilenet_v3_large")
    raise BadInput(f"unknown family '{name}' (known: {', '.join(GROUPS)})")


def grid(group: str) -> list[tuple[float, float, int, Optional[float]]]:
    """(width, depth, resolution, phi or None) of every candidate of ``group``."""
    if not group.startswith("efficientnet"):
        return [(w, 1.0, r, None) for w in MOBILENET_WIDTHS for r in MOBILENET_RESOLUTIONS]
    points = {}
    for phi in PHIS:
        w, d = round(1.1 ** phi, 3), round(1.2 ** phi, 3)
        r = int(round(224 * 1.15 ** phi / 8) * 8)
        if 0.3 <= w and 0.3 <= d and 64 <= r <= 640:
            points[(w, d, r)] = phi
    for w in EFF_WIDTHS:
        for d in EFF_DEPTHS:
            for r in EFF_RESOLUTIONS:
                points.setdefault((w, d, r), None)
    return [(w, d, r, phi) for (w, d, r), phi in points.items()]


def evaluate(group: str, width: float, depth: float, resolution: int, phi: Optional[float],
             model: LatencyModel, budget: SearchBudget, classes: int) -> Candidate:
    from ..models.families import get_spec

    family = GROUPS[group]
    spec = get_spec(family, width=width, depth=depth, resolution=resolution, classes=classes)
    t = totals(spec_work(spec))
    precision = model.precision
    act_bytes = 2 if (precision == "fp16" and model.runtime != "tflite-xnnpack") else \
        ACTIVATION_BYTES[precision]
    c = Candidate(group=group, family=family, width=width, depth=depth, resolution=resolution,
                  spec=spec, phi=phi, macs=t["macs"], params=t["params"],
                  latency_ms=model.predict_ms(spec), latency_error_pct=model.expected_error_pct,
                  memory_mb=peak_activation_bytes(spec, act_bytes) / 1e6,
                  size_mb=weight_bytes(spec, _weight_precision(precision))
                  * SIZE_OVERHEAD[precision] / 1e6,
                  proxy=proxy_accuracy(spec, family))
    for name, value, limit, unit in (("latency", c.latency_ms, budget.latency_ms, "ms"),
                                     ("memory", c.memory_mb, budget.memory_mb, "MB"),
                                     ("size", c.size_mb, budget.size_mb, "MB")):
        if value > limit:
            c.excess = max(c.excess, value / limit - 1)
            c.misses[name] = f"{value:.3g} {unit} > {limit:g} {unit} (+{100 * (value / limit - 1):.0f}%)"
    return c


def _weight_precision(precision: str) -> str:
    return "int8" if precision == "int16x8" else precision


def search(groups: list[str], model: LatencyModel, budget: SearchBudget,
           classes: int = 1000, resolution: Optional[int] = None) -> list[Candidate]:
    """Every candidate of ``groups``, fitting ones first, each part best proxy first.
    ``resolution`` fixes the input size (data of a known size) and searches the rest."""
    if resolution is not None and not 16 <= resolution <= 1024:
        raise BadInput(f"--resolution must be between 16 and 1024 (got {resolution})")
    out, seen = [], set()
    for g in groups:
        points = grid(g)
        if resolution is not None:
            points = list(dict.fromkeys((w, d, resolution, None) for w, d, _, _ in points))
        for w, d, r, phi in sorted(points, key=lambda p: (p[3] is None, p[:3])):
            c = evaluate(g, w, d, r, phi, model, budget, classes)
            key = (g, c.spec.stem, c.spec.blocks, c.spec.head, c.spec.pre_logits, r)
            if key not in seen:  # depth multipliers that round to the same blocks: keep one
                seen.add(key)
                out.append(c)
    # fitting first, best proxy first (ties: the faster one); then the nearest misses
    out.sort(key=lambda c: (not c.fits, -round(c.proxy.top1, 1) if c.fits else c.excess,
                            c.latency_ms))
    return out


__all__ = ["SearchBudget", "Candidate", "GROUPS", "evaluate", "grid", "group_of", "search"]
