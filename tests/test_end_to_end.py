"""End to end on real data: a MobileNetV2 trained on the committed Fashion-MNIST sample is
quantized to int8 and fp16 by the CLI, and each artifact is profiled by the local runner.

Tolerances (1,000 test images, so one image is 0.1 point):
- fp16 keeps float weights to ~3 significant digits: accuracy within 0.5 points of fp32,
  top-1 agreement >= 99%.
- int8 (200 calibration images, per-channel weights) on a model trained for 12 epochs: within
  3 points of fp32, and >= 80% top-1 agreement. Agreement is the weaker figure on purpose: a
  model at 55-70% accuracy has many near-ties, and an int8 softmax output has a resolution of
  1/256, so tied classes flip (measured on a deeper MobileNetV2 at 53%: 85% agreement with
  equal accuracy, 52.9 vs 52.4%).
  Measured values are printed by -s.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def profiles(workdir, trained_keras, trained_int8):
    """The float model profiled, and its int8 (conftest's, with the speed check) and fp16
    files profiled against it."""
    results = {}
    ref = run_cli("profile", trained_keras, "--data", "fashion-mnist-sample:test",
                  "--runs", "5", "--warmup", "1", "--json", check=True)
    results["fp32-keras"] = json.loads(ref.stdout)
    fp16 = workdir / "trained_fp16.tflite"
    run_cli("quantize", trained_keras, "--mode", "fp16", "--calib", "fashion-mnist-sample:train",
            "-o", fp16, "--force", check=True)
    for mode, out in (("int8", trained_int8), ("fp16", fp16)):
        result_path = workdir / f"profile_{mode}.json"
        proc = run_cli("profile", out, "--data", "fashion-mnist-sample:test", "--reference",
                       trained_keras, "--runs", "20", "--threads", "1", "-o", result_path,
                       "--force", "--json", check=True)
        doc = json.loads(proc.stdout)
        assert json.loads(result_path.read_text())["accuracy"] == doc["accuracy"]
        results[mode] = doc
    return results


def test_float_model_learned_something(profiles):
    acc = profiles["fp32-keras"]["accuracy"]
    print(f"fp32 keras top-1 {acc['top1']:.1f}% on {acc['n']} images")
    assert acc["n"] == 1000
    assert acc["top1"] > 40.0  # chance is 10%; 12 epochs on the sample reach about 68%


def test_int8_close_to_float(profiles):
    fp32, r = profiles["fp32-keras"]["accuracy"]["top1"], profiles["int8"]
    print(f"int8 top-1 {r['accuracy']['top1']:.1f}% vs fp32 {fp32:.1f}%; agreement "
          f"{r['fidelity']['top1_agreement']:.1f}%, SNR {r['fidelity']['snr_db']:.1f} dB")
    assert r["model"]["precision"] == "int8"
    assert abs(r["accuracy"]["top1"] - fp32) <= 3.0
    assert r["fidelity"]["top1_agreement"] >= 80.0
    assert r["reference_accuracy"]["top1"] == pytest.approx(fp32, abs=0.01)


def test_fp16_matches_float(profiles):
    fp32, r = profiles["fp32-keras"]["accuracy"]["top1"], profiles["fp16"]
    print(f"fp16 top-1 {r['accuracy']['top1']:.1f}%; SNR {r['fidelity']['snr_db']:.1f} dB")
    assert abs(r["accuracy"]["top1"] - fp32) <= 0.5
    assert r["fidelity"]["top1_agreement"] >= 99.0


def test_profile_document_is_complete(profiles):
    r = profiles["int8"]
    assert r["schema"] == "edgekit.profile/1"
    assert set(r["latency_ms"]) == {"count", "mean", "std", "min", "p50", "p90", "p99", "max"}
    assert r["latency_ms"]["count"] == 20 and r["settings"]["threads"] == 1
    assert 0 < r["latency_ms"]["min"] <= r["latency_ms"]["p50"] <= r["latency_ms"]["max"]
    assert r["init_ms"] > 0 and r["memory"]["peak_rss_mb"] > 0
    assert r["provenance"]["runtime"] == "ai_edge_litert"
    assert r["model"]["sha256"] and r["device"]["cpu"]


def test_int8_sidecar_records_lineage(trained_keras, trained_int8):
    from edgekit.core.artifacts import open_artifact, sha256_of

    art = open_artifact(trained_int8)
    assert art.meta["parent"]["sha256"] == sha256_of(trained_keras)
    assert art.meta["stage"]["config"]["calib_size"] == 200
    assert art.meta["input"]["dtype"] == "int8" and "quantization" in art.meta["input"]
    assert art.meta["labels"][0] == "T-shirt/top"
    assert art.meta["preprocessing"]["mean"] == [127.5, 127.5, 127.5]


def test_quantize_times_int8_against_float(trained_int8):
    """The speed check after quantizing: both models timed on this machine, in one run."""
    from edgekit.core.artifacts import open_artifact

    sc = open_artifact(trained_int8).meta["speed_check"]
    assert sc["baseline"] == "fp32" and sc["threads"] == 1 and sc["runtime"].startswith("ai_edge_litert")
    assert sc["candidate_ms"] > 0 and sc["baseline_ms"] > 0
    assert sc["faster"] == (sc["candidate_ms"] < sc["baseline_ms"])
    cpuinfo = Path("/proc/cpuinfo")  # XNNPACK's int8 gains little on x86 without VNNI
    if platform.machine() == "x86_64" and cpuinfo.exists():
        assert sc["x86_without_vnni"] == ("vnni" not in cpuinfo.read_text())
