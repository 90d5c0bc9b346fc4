"""The latency model: features counted from a spec match the converted graph, the fit recovers
coefficients, device models pick calibrated over estimated, and the published anchors it was
not fitted on are predicted within 10%."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from edgekit.estimate import latency, published as anchors
from edgekit.core.devices import load_device
from edgekit.core.errors import BadInput
from edgekit.models.families import get_spec


@pytest.fixture(autouse=True)
def _empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize("family", ["mobilenet_v3_small", "efficientnet_b0", "mobilenet_v2"])
def test_op_count_matches_the_converted_tflite(family, tmp_path):
    """features()['ops'] is the operator count of the real .tflite (fp32)."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.estimate.timing import convert_spec

    spec = get_spec(family, width=0.35, resolution=64, classes=10)
    path = convert_spec(spec, "fp32", tmp_path / "m.tflite")
    ops = collections.Counter(o["op_name"] for o in Interpreter(model_path=str(path))._get_ops_details())
    assert latency.features(spec)["ops"] == sum(ops.values()), ops


def test_features_scale_with_resolution_and_kind():
    small, big = (latency.features(get_spec("efficientnet_b0", resolution=r)) for r in (128, 256))
    assert big["pw_gmacs"] == pytest.approx(4 * small["pw_gmacs"], rel=0.05)
    assert big["swish_melems"] > 0 and big["gate_melems"] > 0 and big["hswish_melems"] == 0
    lite = latency.features(get_spec("efficientnet_lite0"))
    assert lite["swish_melems"] == lite["gate_melems"] == 0
    assert latency.features(get_spec("mobilenet_v3_large"))["hswish_melems"] > 0


def test_alignment_features_follow_the_16_wide_tiles():
    """Channels are rounded to multiples of 8: MobileNet v1 width 1.0 has 32..1024 (multiples
    of 16, even tile counts), width 1.1 has 72, 144, 280, 560, 1128 (odd tile counts for most
    of its pointwise MACs, depthwise channels 8 past a multiple of 16 for some)."""
    aligned = latency.features(get_spec("mobilenet_v1", width=1.0))
    odd = latency.features(get_spec("mobilenet_v1", width=1.1))
    assert aligned["pwodd_gmacs"] == aligned["dwodd_gmacs"] == 0
    assert odd["pwodd_gmacs"] > 0.5 * odd["pw_gmacs"]
    assert 0 < odd["dwodd_gmacs"] < odd["dw_gmacs"]


def test_weight_spill_needs_a_cache_and_counts_bytes_at_the_precision():
    from edgekit.estimate.work import weight_bytes

    spec = get_spec("mobilenet_v1", width=1.4)  # ~8M weights: 33 MB fp32, 8 MB int8
    llc = 32 * 2 ** 20
    assert latency.features(spec)["spill_mb"] == 0  # no cache size known: no spill claimed
    fp32 = latency.features(spec, "fp32", llc)["spill_mb"]
    assert fp32 == pytest.approx((weight_bytes(spec, "fp32") - llc / 2) / 1e6)
    assert latency.features(spec, "int8", llc)["spill_mb"] == 0


def test_fit_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    names = list(latency.FEATURES)
    true = {n: 0.0 for n in names} | {"const": 0.05, "pw_gmacs": 9.0, "dw_gmacs": 40.0,
                                      "add_melems": 0.3}
    specs = [get_spec(f, width=w, resolution=r) for f in ("mobilenet_v2", "efficientnet_lite0")
             for w in (0.5, 1.0) for r in (96, 160, 224)]
    x = np.array([latency.vector(s) for s in specs])
    y = x @ np.array([true[n] for n in names]) * rng.uniform(0.99, 1.01, len(specs))
    coef = latency.fit(x, y)
    assert all(v >= 0 for v in coef.values())
    assert np.abs(latency.errors_pct(x, y, coef)).max() < 2.0


def test_rate_model_of_a_phone_profile():
    spec = get_spec("mobilenet_v2")
    m = latency.device_model(load_device("pixel7"), "tflite-xnnpack", "fp32", 1)
    rate = load_device("pixel7").coefficient("tflite-xnnpack", "fp32", "gmacs_per_s_1t")
    overhead = load_device("pixel7").coefficient("tflite-xnnpack", "fp32", "overhead_ms")
    macs = sum(latency.features(spec)[k] for k in ("pw_gmacs", "dw_gmacs", "conv_gmacs", "fc_gmacs"))
    assert m.predict_ms(spec) == pytest.approx(overhead + 1000 * macs / rate)
    assert m.provenance == "estimated" and m.expected_error_pct > 0
    four = latency.device_model(load_device("pixel7"), "tflite-xnnpack", "fp32", 4)
    assert four.predict_ms(spec) < m.predict_ms(spec)


def test_missing_cost_model_is_bad_input():
    with pytest.raises(BadInput, match="no cost model for tflite-gpu/int8"):
        latency.device_model(load_device("pixel7"), "tflite-gpu", "int8", 1)


def test_published_anchors_held_out_within_ten_percent():
    results = anchors.check()
    s = anchors.summary(results)
    assert s["calibration_max_abs_error_pct"] < 1e-6  # two points, two parameters
    assert s["held_out"] >= 12
    assert s["held_out_within_10pct"] == 1.0, [
        (r.series, r.model, round(r.error_pct, 1)) for r in results if abs(r.error_pct) > 10]
