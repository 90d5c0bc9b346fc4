"""`edgekit compare`: thresholds, exit codes, what is not comparable, and the real CI use
(a baseline profile against a new one of a worse model)."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import run_cli
from edgekit.evaluate.compare import Limits, compare
from edgekit.core.errors import BadInput

BASE = {
    "schema": "edgekit.profile/1",
    "model": {"path": "m.tflite", "size_bytes": 1_000_000},
    "device": {"name": "host", "cpu": "AMD EPYC"},
    "settings": {"runner": "local", "threads": 1},
    "latency_ms": {"p50": 2.0},
    "memory": {"peak_rss_mb": 100.0},
    "accuracy": {"top1": 80.0, "dataset": "fashion-mnist:test", "subset": "all", "n": 1000},
    "fidelity": {"top1_agreement": 97.0},
    "predictions": {"dataset": "fashion-mnist:test", "subset": "all",
                    "top1": [i % 10 for i in range(1000)]},
}


def _new(**changes):
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        *keys, last = path.split("__")
        d = doc
        for k in keys:
            d = d[k]
        d[last] = value
    return doc


def _status(doc):
    return {r["metric"]: r["status"] for r in doc["rows"]}


def test_identical_results_pass():
    doc = compare(BASE, copy.deepcopy(BASE))
    assert doc["passed"] and set(_status(doc).values()) == {"ok"}


def test_each_threshold_is_a_regression_only_beyond_its_limit():
    ok = compare(BASE, _new(accuracy__top1=79.5, latency_ms__p50=2.2,
                            model__size_bytes=1_050_000))
    assert ok["passed"], ok["rows"]
    bad = compare(BASE, _new(accuracy__top1=79.4, latency_ms__p50=2.21,
                             model__size_bytes=1_050_001, memory__peak_rss_mb=121.0,
                             fidelity__top1_agreement=95.9))
    assert not bad["passed"]
    assert set(bad["regressions"]) == {"top-1", "latency p50", "size",
                                       "peak memory", "ref agreement"}
    looser = compare(BASE, _new(accuracy__top1=79.0), Limits(max_accuracy_drop=1.0))
    assert looser["passed"]


def test_latency_is_not_compared_across_cpus_or_when_not_meaningful():
    other_cpu = compare(BASE, _new(device__cpu="Cortex-A76", latency_ms__p50=9.0))
    assert other_cpu["passed"] and _status(other_cpu)["latency p50"] == "skipped"
    emulated = _new(latency_ms__p50=900.0)
    emulated["latency_ms"]["meaningful"] = False
    emulated["latency_ms"]["note"] = "qemu emulation"
    doc = compare(BASE, emulated)
    row = next(r for r in doc["rows"] if r["metric"] == "latency p50")
    assert doc["passed"] and "not meaningful" in row["note"]


def test_prediction_agreement_is_reported_and_gated_on_request():
    flipped = _new()
    flipped["predictions"]["top1"][:3] = [9, 9, 9]  # three images change class
    doc = compare(BASE, flipped)
    row = next(r for r in doc["rows"] if r["metric"] == "run agreement")
    assert doc["passed"] and row["new"] == pytest.approx(99.7) and "3 of 1000" in row["note"]
    assert compare(BASE, flipped, Limits(min_prediction_agreement=99.5))["passed"]
    strict = compare(BASE, flipped, Limits(min_prediction_agreement=99.8))
    assert strict["regressions"] == ["run agreement"]


def test_accuracy_on_different_data_is_refused():
    with pytest.raises(BadInput, match="different data"):
        compare(BASE, _new(accuracy__n=500))


def test_cli_exit_codes(tmp_path, workdir, small_keras, trained_keras):
    """A trained model as the baseline, the untrained one as the 'new' result: exit 1 and a
    table naming the regression; the same result against itself: exit 0."""
    paths = {}
    for name, model in (("base", trained_keras), ("new", small_keras)):
        paths[name] = tmp_path / f"{name}.json"
        run_cli("profile", model, "--data", "fashion-mnist-sample:test", "--limit", "200",
                "--runs", "5", "--threads", "1", "-o", paths[name], check=True)
    same = run_cli("compare", paths["base"], paths["base"])
    assert same.returncode == 0, same.stderr
    worse = run_cli("compare", paths["base"], paths["new"], "--json")
    assert worse.returncode == 1
    doc = json.loads(worse.stdout)
    assert "top-1" in doc["regressions"] and "regression in" in worse.stderr
    (tmp_path / "bad.json").write_text("{not json")
    for args in ((paths["base"], tmp_path / "bad.json"), (paths["base"], tmp_path / "none.json"),
                 (paths["base"], paths["new"], "--max-latency-regression", "ten")):
        proc = run_cli("compare", *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
