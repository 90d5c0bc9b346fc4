"""The Arm64 emulator: `emulator status/remove` and clear errors always; the accuracy
regression itself (int8 model on emulated Arm64 vs the same model native, gated by
`edgekit compare`) when `edgekit emulator setup` has been run as root (as `.ci/run` does)."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_cli
from edgekit.runtime import qemu as emulator


def test_status_and_remove_on_an_empty_cache(tmp_path):
    env = {"EDGEKIT_CACHE": str(tmp_path / "cache")}
    doc = json.loads(run_cli("emulator", "status", "--json", env=env, check=True).stdout)
    assert doc == {"ready": False, "path": str(tmp_path / "cache" / "emulator" / "arm64")}
    assert json.loads(run_cli("emulator", "remove", "--json", env=env,
                              check=True).stdout)["removed"] is False


def test_profile_on_the_emulator_without_setup_is_a_clear_error(tmp_path, trained_int8):
    proc = run_cli("profile", trained_int8, "--device", "emulator-arm64", "--runs", "1",
                   env={"EDGEKIT_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 3 and "emulator setup" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debian_mirror_comes_from_apt_sources():
    assert emulator.debian_mirror().startswith(("http://", "https://"))


ready = emulator.status()["ready"] and os.geteuid() == 0
needs_emulator = pytest.mark.skipif(not ready, reason="run `edgekit emulator setup` as root "
                                    "first (.ci/run does)")
COMMON = ["--data", "fashion-mnist-sample:test", "--runs", "2", "--warmup", "0", "--threads", "1"]


@pytest.fixture(scope="module")
def runs(trained_fp32, trained_int8, small_keras, workdir):
    """The int8 model profiled natively and emulated (fp32 TFLite as the reference on each),
    and a much worse int8 model (untrained) emulated."""
    bad = workdir / "emu_untrained_int8.tflite"
    run_cli("quantize", small_keras, "--mode", "int8", "--calib", "fashion-mnist-sample:train",
            "--no-speed-check", "-o", bad, "--force", check=True)
    out = {}
    for name, model, extra in (("native", trained_int8, ["--reference", trained_fp32]),
                               ("emulated", trained_int8,
                                ["--device", "emulator-arm64", "--reference", trained_fp32]),
                               ("emulated-again", trained_int8, ["--device", "emulator-arm64"]),
                               ("emulated-bad", bad, ["--device", "emulator-arm64"])):
        out[name] = workdir / f"emu_{name}.json"
        run_cli("profile", model, *COMMON, *extra, "-o", out[name], "--force", check=True)
    return out


@needs_emulator
def test_emulated_arm64_int8_is_as_faithful_as_native(runs):
    """Arm and x86 int8 kernels round differently, so the two runs disagree on some images,
    but each is as close to the float model as the other (the float reference agrees)."""
    native, emulated = (json.loads(runs[k].read_text()) for k in ("native", "emulated"))
    assert emulated["latency_ms"]["meaningful"] is False
    assert emulated["device"] == emulated["device"] | {"name": "emulator-arm64",
                                                         "machine": "aarch64"}
    print(f"native {native['accuracy']['top1']:.1f}% emulated {emulated['accuracy']['top1']:.1f}%"
          f"; vs float: {native['fidelity']['top1_agreement']:.1f}% / "
          f"{emulated['fidelity']['top1_agreement']:.1f}% agreement, "
          f"{native['fidelity']['snr_db']:.1f} / {emulated['fidelity']['snr_db']:.1f} dB")
    assert abs(native["reference_accuracy"]["top1"] - emulated["reference_accuracy"]["top1"]) <= 0.2
    assert abs(native["fidelity"]["top1_agreement"] - emulated["fidelity"]["top1_agreement"]) <= 5
    assert abs(native["fidelity"]["snr_db"] - emulated["fidelity"]["snr_db"]) <= 2.0
    assert abs(native["accuracy"]["top1"] - emulated["accuracy"]["top1"]) <= 3.0


@needs_emulator
def test_ci_gate_on_the_emulator(runs):
    """What .github/workflows/edgekit-accuracy.yml does: an emulated baseline, a new emulated
    run; the same model passes (the emulator is deterministic), a worse one fails."""
    same = run_cli("compare", runs["emulated"], runs["emulated-again"], "--json",
                   "--min-prediction-agreement", "100")
    assert same.returncode == 0, same.stdout + same.stderr
    rows = {r["metric"]: r for r in json.loads(same.stdout)["rows"]}
    assert rows["run agreement"]["new"] == 100.0 and rows["latency p50"]["status"] == "skipped"
    worse = run_cli("compare", runs["emulated"], runs["emulated-bad"], "--json")
    assert worse.returncode == 1 and "top-1" in json.loads(worse.stdout)["regressions"]


def test_missing_qemu_or_root_are_clear_errors(monkeypatch):
    """Simulated faults (this machine has both): no qemu-aarch64-static, not root."""
    from edgekit.core.errors import EnvironmentProblem

    monkeypatch.setattr(emulator.shutil, "which", lambda name: None)
    with pytest.raises(EnvironmentProblem, match="qemu-user-static"):
        emulator.check_can_run()
    monkeypatch.setattr(emulator.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(emulator.os, "geteuid", lambda: 1000)
    with pytest.raises(EnvironmentProblem, match="needs root"):
        emulator.check_can_run()
