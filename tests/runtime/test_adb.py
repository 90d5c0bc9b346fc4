"""The adb runner. No phone exists here: parsing is checked on hand-written text in
benchmark_model's format (tests/data/benchmark_model), and the whole runner through a stand-in
`adb` (tests/adb_standin.py) whose `benchmark_model` prints that text for timing and runs the
model for real with ai-edge-litert for the per-image accuracy loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import adb_standin
from conftest import run_cli
from edgekit.runtime.adb import benchmark_command, big_core_mask, parse_benchmark_output

DATA = Path(__file__).parents[1] / "data" / "benchmark_model"


def test_parse_new_format_with_percentiles():
    r = parse_benchmark_output((DATA / "logcat_new.txt").read_text())
    s = r["latency_summary"]
    assert s["count"] == 50  # the timed pass, not the 5 warm-up runs
    assert s["p50"] == pytest.approx(9.701) and s["mean"] == pytest.approx(9.80366)
    assert s["min"] == pytest.approx(9.521) and s["p95"] == pytest.approx(10.650)
    assert r["init_ms"] == pytest.approx(41.27)
    assert r["memory_overall_mb"] == pytest.approx(18.2109)
    assert r["memory_peak_mb"] == pytest.approx(22.5469)


def test_parse_old_format_without_percentiles():
    r = parse_benchmark_output((DATA / "plain_old.txt").read_text())
    s = r["latency_summary"]
    assert s["count"] == 189 and "p50" not in s  # never invent a median it did not print
    assert s["mean"] == pytest.approx(5.28871) and s["std"] == pytest.approx(0.141)
    assert r["init_ms"] == pytest.approx(812.5)
    assert (r["memory_init_mb"], r["memory_overall_mb"]) == (96.1172, 131.402)


def test_parse_failure_is_an_environment_problem():
    from edgekit.core.errors import EnvironmentProblem

    with pytest.raises(EnvironmentProblem, match="no timings"):
        parse_benchmark_output("ERROR: Could not open 'x.tflite'.\n")


def test_big_cores_and_flags():
    # Pixel 7: 2x X1, 2x A78, 4x A55 -> cpus 0-3 A55, 4-5 A78, 6-7 X1
    assert big_core_mask([2, 2, 4], 2) == "c0"
    assert big_core_mask([2, 2, 4], 4) == "f0"
    assert big_core_mask([2, 2, 4], 99) == "ff"
    cpu = benchmark_command("/b", "/m.tflite", threads=4, warmup=5, runs=50, mask="f0")
    assert cpu[:3] == ["taskset", "f0", "/b"] and "--num_threads=4" in cpu
    assert "--use_xnnpack=true" in cpu and "--num_runs=50" in cpu
    gpu = benchmark_command("/b", "/m.tflite", threads=1, warmup=1, runs=5, gpu=True)
    assert gpu[0] == "/b" and "--use_gpu=true" in gpu


@pytest.fixture()
def standin(tmp_path, monkeypatch):
    """PATH with the stand-in adb; a phone folder with benchmark_model in /data/local/tmp."""
    env = adb_standin.install(tmp_path, output=DATA / "logcat_new.txt")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env, tmp_path / "phone", tmp_path / "adb.log"


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_profile_on_a_phone_through_adb(standin, trained_int8, tmp_path):
    env, root, log = standin
    out = tmp_path / "phone.json"
    proc = run_cli("profile", trained_int8, "--device", "pixel7", "--serial", "2A1B3C",
                   "--data", "fashion-mnist-sample:test", "--limit", "40", "--runs", "50",
                   "--warmup", "5", "-o", out, "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    local = json.loads(run_cli("profile", trained_int8, "--data", "fashion-mnist-sample:test",
                               "--limit", "40", "--runs", "1", "--json", check=True).stdout)
    assert doc["settings"]["runner"] == "adb" and doc["settings"]["serial"] == "2A1B3C"
    assert doc["device"]["name"] == "pixel7" and doc["device"]["cpu"] == "GS201"
    assert doc["latency_ms"]["p50"] == pytest.approx(9.701)  # parsed from the tool's output
    assert doc["memory"]["peak_rss_mb"] == pytest.approx(22.5469)
    # accuracy went through raw input files, the device-side loop and raw outputs
    assert doc["predictions"]["top1"] == local["predictions"]["top1"]
    assert doc["accuracy"]["top1"] == local["accuracy"]["top1"]
    entries = _log(log)
    assert all(e.get("serial") == "2A1B3C" for e in entries if "args" in e)
    assert {"taskset": "f0"} in entries  # 4 threads (the Pixel 7 budget) on the 4 big cores
    timing = next(e["benchmark_model"] for e in entries
                  if "benchmark_model" in e and "output_filepath" not in e["benchmark_model"])
    assert timing["num_threads"] == "4" and timing["num_runs"] == "50"
    assert timing["use_xnnpack"] == "true"
    assert sum("output_filepath" in e.get("benchmark_model", {}) for e in entries) == 40
    assert list((root / "data/local/tmp").glob("edgekit.*")) == []  # cleaned up


def test_gpu_delegate_and_a_pushed_binary(standin, trained_int8, tmp_path):
    env, root, log = standin
    binary = tmp_path / "benchmark_model"
    binary.write_bytes((root / "data/local/tmp/benchmark_model").read_bytes())
    (root / "data/local/tmp/benchmark_model").unlink()
    proc = run_cli("profile", trained_int8, "--device", "pixel7", "--benchmark-binary", binary,
                   "--accelerator", "gpu", "--runs", "20", "--json", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    entries = _log(log)
    flags = next(e["benchmark_model"] for e in entries if "benchmark_model" in e)
    assert flags["use_gpu"] == "true" and not any("taskset" in e for e in entries)
    assert any(e.get("args", [""])[0] == "push" and e["args"][2].endswith("/benchmark_model")
               for e in entries)


def test_missing_benchmark_model_and_adb_are_clear_errors(standin, trained_int8, tmp_path):
    env, root, _ = standin
    (root / "data/local/tmp/benchmark_model").unlink()
    proc = run_cli("profile", trained_int8, "--device", "pixel7", "--runs", "1", env=env)
    assert proc.returncode == 3 and "--benchmark-binary" in proc.stderr
    proc = run_cli("profile", trained_int8, "--serial", "X", "--runs", "1",
                   env={"PATH": str(tmp_path / "nowhere")})
    assert proc.returncode in (2, 3) and "Traceback" not in proc.stderr
    proc = run_cli("profile", trained_int8, "--serial", "a;reboot", "--runs", "1", env=env)
    assert proc.returncode == 2 and "serial" in proc.stderr


def test_trtexec_summary_parsing():
    """TensorRT's summary (the Jetson path of the SSH runner): Latency becomes the latency,
    GPU Compute Time is kept; older TensorRT prints only the 99th percentile."""
    from edgekit.core.errors import EnvironmentProblem
    from edgekit.runtime import trtexec

    r = trtexec.parse((DATA.parent / "trtexec_orin.txt").read_text(), 100)
    assert r["latency_summary"] == {"count": 100, "min": 2.41016, "max": 2.98828,
                                    "mean": 2.47695, "p50": 2.46289, "p90": 2.50781,
                                    "p95": 2.53906, "p99": 2.93164}
    assert r["gpu_compute_ms"]["p50"] == 2.40625 and r["throughput_qps"] == 402.117
    assert r["runtime_version"] == "8.6.2"
    old = ("[I] Latency: min = 9.5 ms, max = 51.4 ms, mean = 16.6 ms, median = 11.6 ms, "
           "percentile(99%) = 47.6 ms\n")
    assert trtexec.parse(old, 10)["latency_summary"]["p99"] == 47.6
    with pytest.raises(EnvironmentProblem, match="no performance summary"):
        trtexec.parse("[E] Error[4]: could not parse the model\n", 10)
    argv = trtexec.command("trtexec", "/m.onnx", runs=50, warmup_ms=200, precision="fp16")
    assert "--fp16" in argv and "--iterations=50" in argv
