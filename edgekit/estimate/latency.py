"""Cost model, part 2: latency predicted from a spec's per-layer work.

A batch-1 CPU inference is a sequence of kernels; each costs time in proportion to its
arithmetic (MACs, at a rate that differs by layer kind: pointwise GEMMs run near peak,
depthwise and the 3-channel stem conv do not), to the activation bytes it writes, and to a
fixed dispatch cost. Elementwise operators that TFLite does not fuse into the convolution
(swish = logistic + mul, hard-swish, the squeeze-excite gate, residual adds) cost per element.
Two effects of the kernels' SIMD tiling matter as much as the MAC count (measured on this
project's x86 host with XNNPACK fp32, one layer at a time: a 1x1 conv with 592 output channels
runs at 104 GMAC/s, one with 600 at 129; a 3x3 depthwise on 147 channels at 28 GMAC/s, on 144
at 43): pointwise layers whose output channels fill an odd number of 16-wide tiles, and
depthwise layers whose channels are not a multiple of 16, run at a lower rate. The zoo rounds
channels to multiples of 8, so about half of all widths hit one or both. A third effect is
memory: once a model's weights outgrow about half of the last-level cache, every inference
streams them from DRAM again (fp32 held-out error fell from 81% to 92-96% within 10% with
this feature, 5-fold, on 80-94 host measurements). NNLS sets a coefficient to zero where a
device shows no such effect, so the features carry no device assumption beyond the 16-wide
tile.

So latency is linear in a handful of *features* of the spec:

    latency_ms = sum_k coefficient_k * feature_k            (all coefficients >= 0)

The coefficients belong to a device, a runtime and a precision. ``edgekit calibrate`` fits them
by non-negative least squares on relative error from measured micro-benchmarks and blocks;
the published device profiles carry only a MAC rate and an overhead (``gmacs_per_s``,
``overhead_ms``), which this module reads as the same linear model with every MAC costed alike.

No keras here: features come from ``costmodel.spec_work``, so predicting one candidate costs a
fraction of a millisecond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import numpy as np

from .work import _blocks, _n, block_work, spec_work, weight_bytes
from ..core.errors import BadInput
from ..models.spec import ArchSpec

if TYPE_CHECKING:
    from ..core.devices import DeviceProfile

# Quoted when a rate entry gives no expected error of its own: a MAC count alone misses the
# per-kind efficiency differences, which span about 2x on the host measurements.
DEFAULT_RATE_ERROR_PCT = 50.0

# feature name -> what it counts (units chosen so coefficients are milliseconds per unit)
FEATURES: dict[str, str] = {
    "const": "one per inference (invoke overhead), 1",
    "ops": "TFLite operators after fusion (dispatch cost), count",
    "pw_gmacs": "1x1 convolution MACs, 1e9",
    "dw_gmacs": "3x3 depthwise convolution MACs, 1e9",
    "dw5_gmacs": "larger (5x5, 7x7) depthwise convolution MACs, 1e9 (other kernels)",
    "conv_gmacs": "full (kxk, k>1) convolution MACs, 1e9",
    "fc_gmacs": "dense and squeeze-excite MACs, 1e9",
    "out_melems": "elements written by convolutions, 1e6",
    "weight_melems": "convolution weights read, 1e6",
    "pwpad_gmacs": "1x1 convolution MACs with channels padded to 16, 1e9",
    "pwodd_gmacs": "1x1 convolution MACs whose output channels fill an odd number of "
                   "16-wide tiles, 1e9",
    "dwodd_gmacs": "depthwise MACs of layers whose channels are not a multiple of 16, 1e9",
    "swish_melems": "elements through swish (logistic + mul), 1e6",
    "hswish_melems": "elements through hard-swish, 1e6",
    "gate_melems": "elements pooled and gated by squeeze-excite, 1e6",
    "add_melems": "elements of residual adds, 1e6",
    "spill_mb": "weight bytes beyond half the last-level cache (re-read from DRAM), 1e6",
}
_MACS = {"pointwise": "pw_gmacs", "depthwise": "dw_gmacs", "conv": "conv_gmacs",
         "dense": "fc_gmacs", "se": "fc_gmacs"}
_ACT_OPS = {"relu": 0, "relu6": 0, "swish": 2, "hard_swish": 1, "sigmoid": 1,
            "hard_sigmoid": 1}  # operators an activation adds unfused (relu6(x+3) fuses, *1/6 not)


def features(spec: ArchSpec, precision: str = "fp32",
             llc_bytes: float | None = None) -> dict[str, float]:
    """The latency features of ``spec`` (batch 1). All but ``spill_mb`` are
    precision-independent (the precision picks the coefficients); ``spill_mb`` needs the
    weight bytes at ``precision`` and the device's last-level cache (0 when unknown)."""
    f = dict.fromkeys(FEATURES, 0.0)
    f["const"] = 1.0
    hwc = spec.input_shape

    def act(name: str, elems: int) -> None:
        f["ops"] += _ACT_OPS[name]
        if name == "swish":
            f["swish_melems"] += elems / 1e6
        elif name == "hard_swish":
            f["hswish_melems"] += elems / 1e6

    for b in _blocks(spec):
        layers = block_work(b, hwc)
        for w in layers:
            kind = "dw5_gmacs" if w.kind == "depthwise" and w.kernel > 3 else _MACS[w.kind]
            f[kind] += w.macs / 1e9
            f["ops"] += 1
            if w.kind == "depthwise" and w.out_shape[2] % 16:
                f["dwodd_gmacs"] += w.macs / 1e9
            if w.kind == "se":
                act(spec.se_act if w.name.endswith("se_reduce") else spec.se_gate, 0)
                continue
            f["out_melems"] += _n(w.out_shape) / 1e6
            f["weight_melems"] += w.weights / 1e6
            if w.kind == "pointwise":
                pad = lambda c: -(-c // 16) * 16  # noqa: E731
                f["pwpad_gmacs"] += (w.out_shape[0] * w.out_shape[1] * pad(w.in_shape[2])
                                     * pad(w.out_shape[2])) / 1e9
                if -(-w.out_shape[2] // 16) % 2:
                    f["pwodd_gmacs"] += w.macs / 1e9
            linear = w.name.endswith("project_conv") and (
                b.kind == "mbconv" or (b.kind == "fused" and b.expand))  # no activation
            if not linear:
                act(b.act, _n(w.out_shape))
        if b.se_ch:  # the map before se_reduce (or the block input) is pooled and gated
            i = next(i for i, w in enumerate(layers) if w.name.endswith("se_reduce"))
            f["gate_melems"] += _n(layers[i - 1].out_shape if i else hwc) / 1e6
            f["ops"] += 2  # mean + mul
        out = next(x.out_shape for x in reversed(layers) if x.kind != "se")
        if b.residual:
            f["add_melems"] += _n(out) / 1e6
            f["ops"] += 1
        hwc = out
    f["ops"] += 2  # global mean pool, softmax
    for w in spec_work(spec)[-2:]:
        if w.kind == "dense":
            f["fc_gmacs"] += w.macs / 1e9
            f["ops"] += 1
    if spec.pre_logits:
        act(spec.pre_logits_act, 0)
    if llc_bytes:
        f["spill_mb"] = max(0.0, weight_bytes(spec, precision) - llc_bytes / 2) / 1e6
    return f


def vector(spec: ArchSpec, precision: str = "fp32", llc_bytes: float | None = None) -> np.ndarray:
    f = features(spec, precision, llc_bytes)
    return np.array([f[k] for k in FEATURES])


def coefficients_from_rate(gmacs_per_s: float, overhead_ms: float = 0.0) -> dict[str, float]:
    """The linear model of a profile that only knows a MAC rate: every MAC alike."""
    per_gmac = 1000.0 / gmacs_per_s
    return {"const": overhead_ms, "pw_gmacs": per_gmac, "dw_gmacs": per_gmac,
            "dw5_gmacs": per_gmac, "conv_gmacs": per_gmac, "fc_gmacs": per_gmac}


def predict_ms(spec: ArchSpec, coefficients: Mapping[str, float], precision: str = "fp32",
               llc_bytes: float | None = None) -> float:
    f = features(spec, precision, llc_bytes)
    unknown = set(coefficients) - set(FEATURES)
    if unknown:
        raise ValueError(f"unknown latency coefficients: {sorted(unknown)}")
    return float(sum(coefficients.get(k, 0.0) * v for k, v in f.items()))


def fit(x: np.ndarray, y_ms: np.ndarray, names: list[str] | None = None) -> dict[str, float]:
    """Non-negative least squares on *relative* error: rows are divided by the measured
    latency, so a 0.3 ms model weighs as much as a 30 ms one."""
    from scipy.optimize import nnls

    names = names or list(FEATURES)
    w = 1.0 / np.asarray(y_ms, dtype=float)
    coef, _ = nnls(np.asarray(x, dtype=float) * w[:, None], np.ones_like(w))
    return {n: float(c) for n, c in zip(names, coef)}


def errors_pct(x: np.ndarray, y_ms: np.ndarray, coefficients: Mapping[str, float],
               names: list[str] | None = None) -> np.ndarray:
    names = names or list(FEATURES)
    c = np.array([coefficients.get(n, 0.0) for n in names])
    return 100.0 * (np.asarray(x) @ c / np.asarray(y_ms) - 1.0)


def expected_error_pct(errors: np.ndarray) -> float:
    """The error quoted with a prediction: the 90th percentile of absolute errors."""
    return float(np.percentile(np.abs(errors), 90)) if len(errors) else math.nan


@dataclass(frozen=True)
class LatencyModel:
    """The latency model of one device, runtime, precision and thread count."""

    device: str
    runtime: str
    precision: str
    threads: int
    coefficients: dict[str, float]
    expected_error_pct: float
    provenance: str  # measured | estimated | published
    basis: str  # one line: where the coefficients come from
    llc_bytes: float | None = None  # the device's last-level cache (for spill_mb)

    def predict_ms(self, spec: ArchSpec) -> float:
        return predict_ms(spec, self.coefficients, self.precision, self.llc_bytes)

    def as_dict(self) -> dict:
        return {"device": self.device, "runtime": self.runtime, "precision": self.precision,
                "threads": self.threads, "expected_error_pct": round(self.expected_error_pct, 1),
                "provenance": self.provenance, "basis": self.basis,
                "llc_bytes": self.llc_bytes, "coefficients": self.coefficients}


def device_model(profile: "DeviceProfile", runtime: str, precision: str,
                 threads: int) -> LatencyModel:
    """The latency model of ``profile`` for ``runtime``/``precision`` at ``threads``: the
    calibrated fit at that thread count if there is one, else the profile's MAC rate."""
    key = f"{runtime}/{precision}"
    entry = profile.cost_model.get(key)
    if entry is None:
        known = ", ".join(profile.cost_model) or "none"
        raise BadInput(f"device '{profile.name}' has no cost model for {key} (it has: {known})")
    fitted = entry.fitted.get(str(threads))
    if fitted is not None:
        prov = fitted.expected_error_pct.prov
        when = f" on {prov.date}" if prov.kind == "measured" else ""
        return LatencyModel(
            profile.name, runtime, precision, threads,
            {k: n.value for k, n in fitted.coefficients.items()},
            fitted.expected_error_pct.value, prov.kind,
            f"{prov.kind}: fitted by edgekit calibrate{when} on {fitted.measurements} "
            f"measurements at {threads} thread(s)",
            fitted.llc_mb.value * 2 ** 20 if fitted.llc_mb else None)
    c = {k: n for k, n in entry.coefficients.items()}
    if "gmacs_per_s" in c:  # an accelerator: threads do not apply
        rate = c["gmacs_per_s"]
    elif "gmacs_per_s_1t" in c:
        one, mt = c["gmacs_per_s_1t"].value, c.get("gmacs_per_s_mt")
        n_mt = c["mt_threads"].value if "mt_threads" in c else None
        if threads <= 1 or mt is None or not n_mt:
            rate = c["gmacs_per_s_1t"]
        elif threads >= n_mt:
            rate = mt
        else:  # between the published/estimated points: linear in threads
            value = one + (mt.value - one) * (threads - 1) / (n_mt - 1)
            rate = type(mt)(value=value, provenance=mt.provenance)
    else:
        fitted_at = ", ".join(entry.fitted) or "none"
        raise BadInput(f"device '{profile.name}' {key}: calibrated at {fitted_at} thread(s) "
                       f"only; run `edgekit calibrate --device {profile.name} --threads "
                       f"{threads}`")
    overhead = c["overhead_ms"].value if "overhead_ms" in c else 0.0
    err = entry.expected_error_pct.value if entry.expected_error_pct else DEFAULT_RATE_ERROR_PCT
    kind = rate.prov.kind
    return LatencyModel(profile.name, runtime, precision, threads,
                        coefficients_from_rate(rate.value, overhead), err, kind,
                        f"{kind}: {rate.value:.3g} GMAC/s + {overhead:.3g} ms per inference "
                        f"({_first_clause(rate.prov.text())}; `edgekit devices show "
                        f"{profile.name}` has the rest)")


def predict_for_device(device: str, spec: dict, precision: str | None) -> dict:
    """The latency of a model (its spec as a dict) on ``device`` at the device's default
    runtime and threads, with the prediction's expected error and basis. Raises BadInput when
    the device has no cost model for that precision."""
    from ..core.devices import load_device
    from ..models.spec import spec_from_dict

    profile = load_device(device)
    b = profile.default_budget
    precision = precision if precision in ("int8", "fp16") else "fp32"
    model = device_model(profile, b.runtime, precision, int(b.threads.value))
    return {"latency_ms": round(model.predict_ms(spec_from_dict(spec)), 4), "device": device,
            "runtime": b.runtime, "precision": precision, "threads": model.threads,
            "expected_error_pct": round(model.expected_error_pct, 1), "basis": model.basis}


__all__ = ["LatencyModel", "device_model", "predict_for_device", "FEATURES",
           "coefficients_from_rate", "errors_pct",
           "expected_error_pct",
           "features", "fit", "predict_ms", "vector"]


def _first_clause(text: str, limit: int = 120) -> str:
    """The first clause of a source's text (up to ";"), never cut inside a word."""
    clause = text.split(";")[0].strip()
    if len(clause) <= limit:
        return clause
    return clause[:limit].rsplit(" ", 1)[0].rstrip(",") + " …"
