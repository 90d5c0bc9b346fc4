"""The Pareto front of a report is per device when variants were measured on several."""

from __future__ import annotations

from edgekit.evaluate.report import device_fronts


def _variant(sha: str, **by_device: tuple[float, float]) -> dict:
    return {"sha256": sha, "profiles": [
        {"device": d, "latency_p50_ms": ms, "accuracy": {"top1": top1}}
        for d, (ms, top1) in by_device.items()]}


def test_each_device_has_its_own_front():
    rows = [_variant("a", pi=(10.0, 70.0), phone=(2.0, 70.0)),
            _variant("b", pi=(8.0, 69.0), phone=(3.0, 69.0)),  # faster on the Pi only
            _variant("c", pi=(12.0, 69.5), phone=(1.0, 60.0)),  # beaten on the Pi by a
            _variant("d", pi=(10.0, 70.0))]  # a's twin on the Pi: neither beats the other
    fronts = device_fronts(rows)
    assert fronts == {"pi": {"a", "b", "d"}, "phone": {"a", "c"}}


def test_no_measurement_no_front():
    rows = [{"sha256": "a", "profiles": [{"device": "pi", "latency_p50_ms": None,
                                          "accuracy": {"top1": 50.0}}]},
            {"sha256": "b", "profiles": [{"device": "pi", "latency_p50_ms": 3.0}]}]
    assert device_fronts(rows) == {}
