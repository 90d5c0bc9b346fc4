"""The SSH runner against a real OpenSSH server on loopback (skipped when openssh-server is
not installed): profile and accuracy match the local runner, the device folder is always
removed, a connection dropped mid-run and an unreachable host are clear errors (exit 3), and
hosts that look like options never reach ssh."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sshd_server
from conftest import run_cli

pytestmark = pytest.mark.skipif(sshd_server.SSHD is None,
                                reason="openssh-server is not installed (apt-get install "
                                       "openssh-server)")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = sshd_server.start(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def int8_model(trained_int8) -> Path:
    return trained_int8


def _device_folders(sshd) -> set[str]:
    return {p.name for p in sshd.device_tmp.glob("edgekit.*")}


def test_the_device_has_its_own_tmpdir(sshd):
    """The runner's private folders go to this server's TMPDIR, not the /tmp that tests on the
    other worker share, so the clean-up checks below see only this file's folders."""
    out = subprocess.run(["ssh", "-p", str(sshd.port), "-i", str(sshd.identity),
                          *(f"-o{o}" for o in sshd.options), sshd.host,
                          "mktemp -d -t edgekit.XXXXXXXX"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert Path(out).parent == sshd.device_tmp and Path(out).is_dir()
    Path(out).rmdir()


def test_profile_over_ssh_matches_local(sshd, int8_model, tmp_path):
    before = _device_folders(sshd)
    common = ["--data", "fashion-mnist-sample:test", "--limit", "200", "--runs", "10",
              "--threads", "1", "--json"]
    remote = json.loads(run_cli("profile", int8_model, "--device", "raspberry-pi-4",
                                *sshd.cli_args(), "--remote-python", sys.executable, *common,
                                check=True).stdout)
    local = json.loads(run_cli("profile", int8_model, *common, check=True).stdout)
    assert remote["settings"]["runner"] == "ssh" and remote["settings"]["host"] == sshd.host
    assert remote["device"]["name"] == "raspberry-pi-4"
    assert remote["accuracy"]["n"] == 200
    # same machine, same interpreter: the device-side harness gives the local answer exactly
    assert remote["accuracy"]["top1"] == local["accuracy"]["top1"]
    assert remote["latency_ms"]["count"] == 10 and remote["latency_ms"]["p50"] > 0
    assert _device_folders(sshd) == before  # the private folder on the device was removed


def test_fidelity_reference_runs_on_the_same_device(sshd, int8_model, trained_keras):
    proc = run_cli("profile", int8_model, *sshd.cli_args(), "--remote-python", sys.executable,
                   "--data", "fashion-mnist-sample:test", "--limit", "50", "--runs", "3",
                   "--reference", trained_keras, "--json", check=True)
    doc = json.loads(proc.stdout)
    assert doc["fidelity"]["top1_agreement"] >= 80.0


def test_connection_dropped_mid_run_is_an_error_without_a_result(sshd, int8_model):
    from edgekit.core.artifacts import open_artifact
    from edgekit.core.errors import EnvironmentProblem
    from edgekit.runtime.ssh import SSHRunner

    runner = SSHRunner(sshd.host, port=sshd.port, identity=sshd.identity, options=sshd.options,
                       python=sys.executable)
    art = open_artifact(int8_model)
    outcome: dict = {}
    with runner:
        runner.prepare(art, [1, 32, 32, 3], art.preprocessing)
        folder = runner.remote
        timer = threading.Timer(3.0, sshd.drop_connections)  # the harness is running by then
        timer.start()
        try:
            outcome["result"] = runner.run(0, 2_000_000, 1)  # far longer than 3 s
        except EnvironmentProblem as e:
            outcome["error"] = str(e)
        finally:
            timer.cancel()
    assert "result" not in outcome
    assert sshd.host in outcome["error"]
    assert not Path(folder).exists()  # cleanup reconnected and removed it


def test_unreachable_host_exits_3_with_one_line(sshd, int8_model, tmp_path):
    closed = sshd_server._free_port()
    proc = run_cli("profile", int8_model, "--host", sshd.host, "--port", str(closed),
                   "--identity", sshd.identity, "--ssh-option", "ConnectTimeout=5",
                   "--runs", "1")
    assert proc.returncode == 3, proc.stderr
    assert "cannot connect" in proc.stderr and "Traceback" not in proc.stderr


def test_host_that_looks_like_an_option_is_refused(int8_model, tmp_path):
    marker = tmp_path / "pwned"
    proc = run_cli("profile", int8_model, "--host", f"-oProxyCommand=touch {marker}",
                   "--runs", "1")
    assert proc.returncode == 2 and "not a host name" in proc.stderr
    assert not marker.exists()
    proc = run_cli("profile", int8_model, "--runner", "ssh", "--runs", "1")
    assert proc.returncode == 2 and "--host" in proc.stderr


def test_remote_words_are_quoted(sshd, tmp_path):
    """A file name with shell metacharacters is one word on the device, not a command."""
    from edgekit.runtime.ssh import SSHRunner

    runner = SSHRunner(sshd.host, port=sshd.port, identity=sshd.identity, options=sshd.options)
    name = "x;touch pwned;$(touch pwned2)"
    try:
        runner._connect()
        runner.remote = str(tmp_path)
        runner._put(b"data", name)
        assert (tmp_path / name).read_bytes() == b"data"
        assert not (Path.home() / "pwned").exists() and not (Path.home() / "pwned2").exists()
        runner.remote = None
    finally:
        runner.close()


def test_calibrate_a_device_over_ssh(sshd, tmp_path):
    """The same calibration as --device host, driven through the SSH runner; the user
    override of the device profile records the runner in its provenance."""
    import yaml

    home = tmp_path / "home"
    proc = run_cli("calibrate", "--device", "raspberry-pi-4", *sshd.cli_args(),
                   "--remote-python", sys.executable, "--suite", "tiny", "--precision", "fp32",
                   "--json", env={"EDGEKIT_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = yaml.safe_load((home / "devices" / "raspberry-pi-4.yaml").read_text())
    fitted = data["cost_model"]["tflite-xnnpack/fp32"]["fitted"]["1"]
    src = data["sources"][fitted["provenance"]]
    assert src["kind"] == "measured" and "(ssh runner" in src["command"]
    assert json.loads(proc.stdout)["fits"][0]["measurements"] == 4


def test_calibrate_refuses_a_remote_device_without_a_host(tmp_path):
    proc = run_cli("calibrate", "--device", "raspberry-pi-4", env={"EDGEKIT_HOME": str(tmp_path)})
    assert proc.returncode == 2 and "--host" in proc.stderr


def test_tensorrt_engine_runs_trtexec_on_the_device(sshd, workdir, trained_keras, tmp_path):
    """`--engine tensorrt` over real SSH; trtexec itself is a stand-in printing TensorRT's
    summary format (tests/data/trtexec_orin.txt: no Jetson here), the device facts and the
    accuracy come from the harness with onnxruntime."""
    import tensorflow as tf
    import tf2onnx
    import keras

    onnx_path = workdir / "ssh_trt.onnx"
    if not onnx_path.exists():
        model = keras.saving.load_model(trained_keras)
        tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec(
            (None, 32, 32, 3), tf.float32, name="input"),), opset=17, output_path=str(onnx_path))
    fixture = Path(__file__).parents[1] / "data" / "trtexec_orin.txt"
    standin = tmp_path / "trtexec"
    standin.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "args"}\ncat {fixture}\n')
    standin.chmod(0o755)
    proc = run_cli("profile", onnx_path, "--device", "jetson-orin-nano", *sshd.cli_args(),
                   "--remote-python", sys.executable, "--engine", "tensorrt", "--trtexec",
                   standin, "--runs", "100", "--preprocessing", "tf", "--data",
                   "fashion-mnist-sample:test", "--limit", "50", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["latency_ms"]["p50"] == pytest.approx(2.46289)  # trtexec's Latency median
    assert doc["latency_ms"]["p99"] == pytest.approx(2.93164)
    assert doc["provenance"]["runtime"] == "tensorrt (trtexec)"
    assert doc["settings"]["engine"] == "tensorrt" and doc["accuracy"]["n"] == 50
    args = (tmp_path / "args").read_text().split()
    assert "--iterations=100" in args and "--avgRuns=1" in args
    assert args[0].startswith("--onnx=") and args[0].endswith("/model.onnx")
