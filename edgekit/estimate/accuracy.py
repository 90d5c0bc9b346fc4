"""The accuracy proxy that ``edgekit scale`` ranks candidates by.

It is *not* a measurement and not a prediction of accuracy on the user's data: it is the
ImageNet top-1 that the published reference variants of the same family reach, interpolated
over compute. For each family kind, a least-squares fit

    top1 = a + b * ln(MACs) + c * ln(resolution)

is made through the published checkpoints (the resolution term only where the references vary
resolution independently of width: MobileNet v1/v2; EfficientNet B0-B7, whose accuracy
saturates over a 100x range of compute, takes a quadratic in ln(MACs) instead). MACs are counted by edgekit's cost model
on the 1000-class spec of each reference, so candidates and references are counted alike. The
expected error is the fit's leave-one-out RMSE; a candidate outside the references' MACs range
is flagged as extrapolated, and above the largest reference it gets that reference's value (no
credit for compute the references never showed pays off).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..models.spec import ArchSpec

SOURCES = {
    "slim-v1": "tensorflow/models research/slim/nets/mobilenet_v1.md (2017_06_14 checkpoints)",
    "slim-v2": "tensorflow/models research/slim/nets/mobilenet/README.md (MobileNetV2 table; "
               "also the tf.keras mobilenet_v2 docstring)",
    "keras-v3": "keras.applications mobilenet_v3 docstring (MobileNetV3 table)",
    "effnet": "Tan & Le 2019, EfficientNet, Table 2 (tensorflow/tpu efficientnet README)",
    "lite": "tensorflow/tpu models/official/efficientnet/lite/README.md (fp32 top-1)",
}

# (family used to build the reference, width, resolution, top-1 %, source); depth follows
# the family default. MobileNet v1/v2 rows: width x resolution grids.
_V1 = {1.0: (70.7, 69.3, 67.2, 64.1), 0.75: (68.4, 67.4, 65.2, 61.8),
       0.5: (64.0, 62.1, 59.9, 56.2), 0.25: (50.6, 49.0, 46.0, 41.3)}
_V2 = {1.4: (75.0,), 1.3: (74.4,), 1.0: (71.8, 70.7, 68.8, 65.3, 60.3),
       0.75: (69.8, 68.7, 66.4, 63.2, 58.8), 0.5: (65.4, 63.9, 61.0, 57.7, 51.2),
       0.35: (60.3, 58.2, 55.7, 50.8, 45.5)}
REFERENCES: list[tuple[str, float, int, float, str]] = [
    *[("mobilenet_v1", w, r, acc, "slim-v1") for w, accs in _V1.items()
      for r, acc in zip((224, 192, 160, 128), accs)],
    *[("mobilenet_v2", w, r, acc, "slim-v2") for w, accs in _V2.items()
      for r, acc in zip((224, 192, 160, 128, 96), accs)],
    ("mobilenet_v3_large", 1.0, 224, 75.6, "keras-v3"),
    ("mobilenet_v3_large", 0.75, 224, 73.3, "keras-v3"),
    ("mobilenet_v3_small", 1.0, 224, 68.1, "keras-v3"),
    ("mobilenet_v3_small", 0.75, 224, 65.4, "keras-v3"),
    *[(f"efficientnet_b{i}", None, None, acc, "effnet")
      for i, acc in enumerate((77.1, 79.1, 80.1, 81.6, 82.9, 83.6, 84.0, 84.3))],
    *[(f"efficientnet_lite{i}", None, None, acc, "lite")
      for i, acc in enumerate((75.1, 76.7, 77.6, 79.8, 81.5))],
]
_EXTRA_TERM = {"mobilenet_v1": "resolution", "mobilenet_v2": "resolution",
               "efficientnet": "quadratic"}


@dataclass(frozen=True)
class Proxy:
    top1: float  # interpolated ImageNet top-1, percent
    error: float  # expected error (leave-one-out RMSE of the fit), percentage points
    extrapolated: bool  # outside the MACs range of the references
    source: str

    def as_dict(self) -> dict:
        return {"imagenet_top1_proxy": round(self.top1, 1), "expected_error_pts": round(self.error, 1),
                "extrapolated": self.extrapolated, "source": self.source,
                "what": "published ImageNet top-1 of the reference variants, interpolated "
                        "by MACs and resolution; not a measurement on your data"}


def _macs(spec: ArchSpec) -> int:
    from .work import spec_work, totals
    return totals(spec_work(spec))["macs"]


def _design(kind: str, macs: np.ndarray, res: np.ndarray) -> np.ndarray:
    cols = [np.ones_like(macs), np.log(macs)]
    extra = _EXTRA_TERM.get(kind)
    if extra == "resolution":
        cols.append(np.log(res))
    elif extra == "quadratic":
        cols.append(np.log(macs) ** 2)
    return np.stack(cols, axis=1)


@lru_cache(maxsize=None)
def _fit(kind: str) -> tuple[np.ndarray, float, float, float, str]:
    """(coefficients, LOO RMSE, min MACs, max MACs, sources) of one family kind."""
    from ..models.families import get_spec

    rows = [r for r in REFERENCES if _kind_of(r[0]) == kind]
    specs = [get_spec(fam, width=w, resolution=res, classes=1000) for fam, w, res, _, _ in rows]
    macs = np.array([_macs(s) for s in specs], dtype=float)
    res = np.array([s.resolution for s in specs], dtype=float)
    acc = np.array([r[3] for r in rows])
    x = _design(kind, macs, res)
    coef = np.linalg.lstsq(x, acc, rcond=None)[0]
    errs = []
    for i in range(len(rows)):  # leave one out
        keep = np.arange(len(rows)) != i
        c = np.linalg.lstsq(x[keep], acc[keep], rcond=None)[0]
        errs.append(float(x[i] @ c - acc[i]))
    loo = math.sqrt(sum(e * e for e in errs) / len(errs))
    sources = "; ".join(SOURCES[s] for s in dict.fromkeys(r[4] for r in rows))
    return coef, loo, float(macs.min()), float(macs.max()), sources


def _kind_of(family: str) -> str:
    for prefix in ("efficientnet_lite", "efficientnet_b", "mobilenet_v3"):
        if family.startswith(prefix):
            return {"efficientnet_b": "efficientnet"}.get(prefix, prefix)
    return family


def proxy_accuracy(spec: ArchSpec, family: str) -> Proxy:
    """The accuracy proxy of ``spec`` (built from zoo ``family``), counted at 1000 classes."""
    from dataclasses import replace

    kind = _kind_of(family)
    coef, loo, lo, hi, sources = _fit(kind)
    macs = float(_macs(replace(spec, classes=1000)))
    # no credit for compute beyond the largest reference (a fit in ln(MACs) keeps rising and
    # a quadratic turns down): above it the proxy holds the largest reference's value
    m = min(macs, hi)
    x = _design(kind, np.array([m]), np.array([float(spec.resolution)]))[0]
    return Proxy(top1=float(x @ coef), error=loo, extrapolated=not lo * 0.95 <= macs <= hi * 1.05,
                 source=sources)


__all__ = ["Proxy", "REFERENCES", "SOURCES", "proxy_accuracy"]
