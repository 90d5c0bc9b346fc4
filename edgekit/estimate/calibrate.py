"""``edgekit calibrate``: fit a device's latency coefficients from measurements.

The suite has two parts, both timed through the Runner interface (local now; SSH, adb and the
emulator use the same code):

* **probes** — small networks made of one repeated block kind (pointwise-heavy inverted
  residuals, large-map depthwise, swish + squeeze-excite, hard-swish + squeeze-excite,
  MobileNet v1 separable convs, the same with channels off the 16-wide SIMD tile), so that
  each feature of ``edgekit.estimate.latency`` varies on its own;
* **representative networks** — scaled variants of every zoo family kind across width, depth
  and resolution.

The coefficients are fitted per precision by non-negative least squares on relative error
(``latency.fit``); the quoted expected error is the 90th percentile of the leave-one-out
errors, so it is an out-of-sample figure, not a fit residual.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..models.spec import ArchSpec, Row, Template

# (family, width, depth, resolution): spread over each family's range, 6 per family kind,
# then 13 that cover what those miss: widths whose channels are not multiples of 16 (v1's odd
# widths), and large models (8-15 ms fp32 on the host) whose weights outgrow the cache
NETWORKS: list[tuple[str, float, float, int]] = [
    ("mobilenet_v1", 0.25, 1.0, 128), ("mobilenet_v1", 0.5, 1.0, 160),
    ("mobilenet_v1", 0.75, 1.0, 224), ("mobilenet_v1", 1.0, 1.0, 192),
    ("mobilenet_v1", 1.25, 1.0, 128), ("mobilenet_v1", 0.35, 1.0, 256),
    ("mobilenet_v2", 0.35, 1.0, 96), ("mobilenet_v2", 0.5, 1.0, 224),
    ("mobilenet_v2", 0.75, 1.0, 160), ("mobilenet_v2", 1.0, 1.0, 128),
    ("mobilenet_v2", 1.3, 1.0, 192), ("mobilenet_v2", 0.6, 1.0, 256),
    ("mobilenet_v3_small", 0.5, 1.0, 224), ("mobilenet_v3_small", 0.75, 1.0, 128),
    ("mobilenet_v3_small", 1.0, 1.0, 192), ("mobilenet_v3_small", 1.25, 1.0, 96),
    ("mobilenet_v3_large", 0.5, 1.0, 160), ("mobilenet_v3_large", 0.75, 1.0, 224),
    ("mobilenet_v3_large", 1.0, 1.0, 128), ("mobilenet_v3_large", 1.25, 1.0, 192),
    ("efficientnet_b0", 0.5, 1.0, 160), ("efficientnet_b0", 0.75, 1.2, 224),
    ("efficientnet_b0", 1.0, 0.8, 128), ("efficientnet_b0", 1.2, 1.4, 96),
    ("efficientnet_b0", 0.35, 1.0, 256), ("efficientnet_lite0", 0.5, 1.2, 224),
    ("efficientnet_lite0", 0.75, 1.0, 128), ("efficientnet_lite0", 1.0, 1.4, 160),
    ("efficientnet_lite0", 1.2, 0.8, 192), ("efficientnet_lite0", 0.35, 1.6, 96),
    ("mobilenet_v1", 0.9, 1.0, 160), ("mobilenet_v1", 1.1, 1.0, 192),
    ("mobilenet_v1", 1.4, 1.0, 224), ("mobilenet_v2", 0.9, 1.0, 224),
    ("mobilenet_v2", 1.4, 1.0, 240), ("mobilenet_v3_small", 1.15, 1.0, 224),
    ("mobilenet_v3_large", 1.15, 1.0, 256), ("efficientnet_b0", 0.9, 1.1, 192),
    ("efficientnet_b0", 1.3, 1.3, 224), ("efficientnet_b1", 1.1, 1.2, 240),
    ("efficientnet_lite0", 1.15, 1.2, 176), ("efficientnet_lite1", 0.9, 1.1, 240),
    ("efficientnet_lite2", 1.3, 1.3, 224),
]

_IR = dict(kind="mbconv", stride=1)
# (name, template rows, stem channels, kind, resolution, extra spec fields)
PROBES: list[tuple[str, tuple[Row, ...], int, str, int, dict[str, Any]]] = [
    ("probe_pointwise", (Row(repeats=6, out=96, expand=6, **_IR),), 96, "mobilenet_v2", 64, {}),
    ("probe_depthwise", (Row(repeats=6, out=32, kernel=5, expand=1, **_IR),), 32,
     "mobilenet_v2", 224, {}),
    ("probe_separable", (Row("dwsep", 6, 128),), 128, "mobilenet_v1", 112, {}),
    ("probe_swish_se", (Row(repeats=5, out=40, expand=6, se=0.25, act="swish", **_IR),), 40,
     "efficientnet", 128, {"se_act": "swish", "se_gate": "sigmoid"}),
    ("probe_hswish_se", (Row(repeats=5, out=40, expand=6, se=0.25, act="hard_swish",
                             **_IR),), 40, "mobilenet_v3",
     128, {"se_act": "relu", "se_gate": "hard_sigmoid"}),
    ("probe_wide", (Row(repeats=4, out=640, expand=1, **_IR),), 640, "mobilenet_v2", 32, {}),
    # 136 channels: 8 past a multiple of 16 (depthwise) and 9 16-wide tiles (pointwise)
    ("probe_unaligned", (Row("dwsep", 6, 136),), 136, "mobilenet_v1", 112, {}),
]
# suite -> (networks, probes): quick takes every third network; tiny, a smoke test, the two
# cheapest (MobileNetV1 0.25 at 128 px and MobileNetV2 0.35 at 96 px) and two probes
SUITES = {"full": (NETWORKS, PROBES), "quick": (NETWORKS[::3][:14], PROBES),
          "tiny": (NETWORKS[0:7:6], PROBES[:2])}


def suite_specs(suite: str = "full") -> list[tuple[str, ArchSpec]]:
    """(label, spec) of every measurement in ``suite`` (full | quick | tiny)."""
    from ..models.families import from_template, get_spec

    networks, probes = SUITES[suite]
    out = []
    for name, rows, stem, kind, res, extra in probes:
        template = Template(stages=(rows,), stem=stem, stem_rule="fixed",
                            stem_act=rows[0].act, se_rule="block_in")
        out.append((name, from_template(template, name, kind, res, **extra)))
    for fam, w, d, r in networks:
        out.append((f"{fam} w{w:g} d{d:g} r{r}",
                    get_spec(fam, width=w, depth=d, resolution=r, classes=1000)))
    return out


@dataclass
class Fit:
    precision: str
    threads: int
    coefficients: dict[str, float]
    n: int
    loo_errors_pct: list[float]
    rows: list[dict[str, Any]] = field(default_factory=list)
    llc_bytes: float | None = None  # the device's last-level cache, as the harness read it

    @property
    def expected_error_pct(self) -> float:
        from .latency import expected_error_pct
        return expected_error_pct(np.array(self.loo_errors_pct))


def fit_measurements(rows: list[dict[str, Any]], precision: str, threads: int) -> Fit:
    """Fit coefficients to measured rows ({"spec", "median_ms"}) with leave-one-out errors."""
    from .latency import errors_pct, fit, vector

    llc = next((r["llc_bytes"] for r in rows if r.get("llc_bytes")), None)
    x = np.array([vector(r["spec"], precision, llc) for r in rows])
    y = np.array([r["median_ms"] for r in rows])
    coef = fit(x, y)
    loo = [100.0] if len(rows) <= 2 else []  # too few to leave one out: claim nothing
    if len(rows) > 2:
        for i in range(len(rows)):
            keep = np.arange(len(rows)) != i
            loo.append(float(errors_pct(x[i:i + 1], y[i:i + 1], fit(x[keep], y[keep]))[0]))
    for r, e in zip(rows, errors_pct(x, y, coef)):
        r["fit_error_pct"] = float(e)
    return Fit(precision, threads, coef, len(rows), loo, rows, llc)


def calibrate(measure: Callable[..., list[dict[str, Any]]], precisions: list[str], threads: int,
              suite: str = "full",
              progress: Callable[[str, int, int], None] | None = None) -> list[Fit]:
    """Measure the suite at each precision and fit the coefficients. ``measure(specs,
    precision, progress)`` returns ``timing.measure_specs`` rows (one runner, or a lab)."""
    labelled = suite_specs(suite)
    fits = []
    for precision in precisions:
        cb = (lambda done, total, p=precision: progress(p, done, total)) if progress else None
        rows = measure([s for _, s in labelled], precision, cb)
        for (label, _), r in zip(labelled, rows):
            r["label"] = label
        fits.append(fit_measurements(rows, precision, threads))
    return fits


def today() -> str:
    return _dt.date.today().isoformat()


def write_profile(profile, fits: list[Fit], out: Path, *, command: str, date: str,
                  cpu: str = "", measured_by: str = "local runner") -> None:
    """Write ``profile`` with ``fits`` as measured coefficients to ``out`` (YAML, atomic),
    keeping everything else of the file it was loaded from; validated before it replaces
    anything."""
    import yaml

    from ..core.artifacts import write_text_atomic
    from ..core.devices import load_profile_file

    data = yaml.safe_load(Path(profile.path).read_text(encoding="utf-8"))
    sources = data.setdefault("sources", {})
    cost = data.setdefault("cost_model", {})
    for f in fits:
        src = f"calibrated-{f.precision}-{f.threads}t"
        sources[src] = {"kind": "measured", "date": date,
                        "command": f"{command} ({measured_by}{', ' + cpu if cpu else ''}; "
                                   f"{f.n} models, NNLS on relative error)"}
        entry = cost.setdefault(f"tflite-xnnpack/{f.precision}", {})
        entry.setdefault("fitted", {})[str(f.threads)] = {
            "provenance": src, "measurements": f.n,
            "expected_error_pct": round(f.expected_error_pct, 2),
            "coefficients": {k: float(f"{v:.6g}") for k, v in f.coefficients.items()}}
        if f.llc_bytes:
            entry["fitted"][str(f.threads)]["llc_mb"] = f.llc_bytes / 2 ** 20
        if not entry.get("coefficients") and "provenance" not in entry:
            entry["provenance"] = src
    if data.get("kind") == "host":
        data["display_name"] = f"This machine (calibrated {date}{': ' + cpu if cpu else ''})"
    text = ("# edgekit device profile, written by `edgekit calibrate` (measured coefficients "
            "under cost_model.*.fitted).\n" + yaml.safe_dump(data, sort_keys=False, width=100))
    with tempfile.TemporaryDirectory() as tmp:  # validate before replacing anything
        check = Path(tmp) / f"{profile.name}.yaml"
        check.write_text(text, encoding="utf-8")
        load_profile_file(check)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, text, force=True)
