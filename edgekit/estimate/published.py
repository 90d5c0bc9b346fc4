"""Does the cost model reproduce published latencies? A check on published phone figures.

For each published series (one phone, runtime, precision and thread count), the rate model of
``edgekit.estimate.latency`` (one MAC rate + one per-inference overhead, the form the phone profiles
use) is fitted on two *calibration* models and then predicts the series' other, *held-out*
models. MACs come from edgekit's own specs of the same variants (1000 classes). Every latency
below is published; nothing here is measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LITE_README = ("tensorflow/tpu models/official/efficientnet/lite/README.md: EfficientNet-Lite0-4 "
               "on Pixel 4, CPU 4 threads and GPU")
SLIM_V2 = "tensorflow/models research/slim/nets/mobilenet/README.md: Pixel 1 single large core"
KERAS_V3 = "keras.applications mobilenet_v3 docstring: Pixel 1 CPU single core"

_LITE = [f"efficientnet_lite{i}" for i in range(5)]
# (series, source, [(model label, family, width, resolution, ms)], calibration labels)
_LITE_MS = {"CPU 4 threads fp32": (12, 18, 26, 41, 76), "CPU 4 threads int8": (6.5, 9.1, 12, 18, 30),
            "GPU fp32": (9.0, 12, 16, 23, 36), "GPU fp16": (6.0, 8.0, 10, 14, 21)}
SERIES = [
    *[(f"Pixel 4 {what}", LITE_README, [(f, f, None, None, ms) for f, ms in zip(_LITE, times)],
       ("efficientnet_lite0", "efficientnet_lite4")) for what, times in _LITE_MS.items()],
    ("Pixel 1 CPU 1 thread fp32", f"{SLIM_V2}; {KERAS_V3}",
     [("mobilenet_v2 1.0_224", "mobilenet_v2", 1.0, 224, 73.8),
      ("mobilenet_v2 0.35_96", "mobilenet_v2", 0.35, 96, 4.5),
      ("mobilenet_v3_large 1.0_224", "mobilenet_v3_large", 1.0, 224, 51.2),
      ("mobilenet_v3_large 0.75_224", "mobilenet_v3_large", 0.75, 224, 39.8),
      ("mobilenet_v3_small 1.0_224", "mobilenet_v3_small", 1.0, 224, 15.8),
      ("mobilenet_v3_small 0.75_224", "mobilenet_v3_small", 0.75, 224, 12.8)],
     ("mobilenet_v2 1.0_224", "mobilenet_v2 0.35_96")),
]


@dataclass(frozen=True)
class AnchorResult:
    series: str
    model: str
    role: str  # calibration | held-out
    macs: int
    published_ms: float
    predicted_ms: float
    source: str

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_ms / self.published_ms - 1.0)


def check() -> list[AnchorResult]:
    """Fit each series on its calibration models; predict every model of the series."""
    from .work import spec_work, totals
    from ..models.families import get_spec

    out = []
    for series, source, rows, calib in SERIES:
        macs = {label: totals(spec_work(get_spec(fam, width=w, resolution=r)))["macs"]
                for label, fam, w, r, _ in rows}
        pts = [(macs[label], ms) for label, *_, ms in rows if label in calib]
        (m1, t1), (m2, t2) = pts
        per_mac = (t2 - t1) / (m2 - m1)  # ms per MAC
        overhead = t1 - per_mac * m1
        for label, *_, ms in rows:
            out.append(AnchorResult(series, label, "calibration" if label in calib else "held-out",
                                    macs[label], ms, overhead + per_mac * macs[label], source))
    return out


def summary(results: list[AnchorResult]) -> dict:
    held = np.array([abs(r.error_pct) for r in results if r.role == "held-out"])
    cal = np.array([abs(r.error_pct) for r in results if r.role == "calibration"])
    return {"calibration_max_abs_error_pct": float(cal.max()), "held_out": len(held),
            "held_out_median_abs_error_pct": float(np.median(held)),
            "held_out_max_abs_error_pct": float(held.max()),
            "held_out_within_10pct": float(np.mean(held <= 10))}


__all__ = ["AnchorResult", "SERIES", "check", "summary"]
