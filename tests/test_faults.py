"""Faults injected for real: an SSH connection killed while the model is being sent and while
the harness runs, a device that stops answering, a harness that hangs, a full disk under the
output folder (a small tmpfs), and Ctrl-C during a conversion.

Each fault must end in one clear line (``error:``, no traceback) with the documented exit code
(3: the device or the machine, 130: interrupted), leave nothing half-made (no output file, no
``.part`` file, no temporary folder, no device folder), and the same command run again must
succeed. Ctrl-C during a recipe is covered by tests/recipes/test_runner.py.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

import sshd_server
from conftest import EDGEKIT, run_cli, spawn_cli

CALIB = ["--calib", "fashion-mnist-sample:train", "--calib-size", "50", "--no-speed-check"]
needs_sshd = pytest.mark.skipif(sshd_server.SSHD is None,
                                reason="openssh-server is not installed (apt-get install "
                                       "openssh-server)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


# --- helpers ------------------------------------------------------------------------------
def _start(*args, env: dict | None = None) -> subprocess.Popen:
    """The real CLI in its own session (a signal sent to it does not reach pytest)."""
    return subprocess.Popen([*EDGEKIT, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})


def _wait_for(what: Callable[[], object], proc: subprocess.Popen, timeout_s: float = 120):
    """Poll ``what()`` until it returns something true; fail if ``proc`` ends first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        if proc.poll() is not None:
            raise AssertionError(f"the command ended ({proc.returncode}) before the fault "
                                 f"could be injected:\n{proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("timed out waiting for the moment to inject the fault")


def _one_error(code: int, stderr: str, expected: int) -> str:
    """The single ``error:`` line of a command that failed with ``expected``."""
    assert code == expected, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _session_args(sshd) -> dict[int, list[str]]:
    """Command line of every process the test sshd started (the device's side)."""
    out = {}
    for pid in sshd.descendants():
        with contextlib.suppress(OSError):
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    return out


def _remote_file(sshd, name: str) -> Path | None:
    """``DEVICE_TMP/edgekit.XXXX/<name>`` named on a device-side command line of *this* sshd
    (its TMPDIR is its own)."""
    for argv in _session_args(sshd).values():
        for word in argv:
            if word.startswith(f"{sshd.device_tmp}/edgekit.") and word.endswith("/" + name):
                return Path(word)
    return None


SLOW_LINK = r'''
"""Forced command of the test key: run the requested command with its stdin trickling in."""
import os, subprocess, sys, time
rate = int(sys.argv[1])
proc = subprocess.Popen(["/bin/sh", "-c", os.environ.get("SSH_ORIGINAL_COMMAND", "true")],
                        stdin=subprocess.PIPE)
while True:
    chunk = os.read(0, 8192)
    if not chunk:
        break
    proc.stdin.write(chunk)
    proc.stdin.flush()
    time.sleep(len(chunk) / rate)
proc.stdin.close()
sys.exit(proc.wait())
'''


@contextlib.contextmanager
def _slow_link(sshd, bytes_per_s: int):
    """A device behind a slow link: the test key gets a forced command (authorized_keys
    ``command=``, read by sshd at every login) that feeds each command's stdin at
    ``bytes_per_s``. A real throttle on the real transport; new connections only."""
    folder = sshd.identity.parent
    keys = folder / "authorized_keys"
    plain = keys.read_text()
    (folder / "slow_link.py").write_text(SLOW_LINK)
    keys.write_text(f'command="{sys.executable} {folder / "slow_link.py"} {bytes_per_s}" '
                    + plain)
    try:
        yield
    finally:
        keys.write_text(plain)


@contextlib.contextmanager
def _tmpfs(folder: Path, size: int):
    """A tmpfs of ``size`` bytes (rounded up to pages) mounted on ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def _parallel(*commands: list) -> list[subprocess.CompletedProcess]:
    """Run CLI commands side by side (two cores), in order of the results."""
    results: list = [None] * len(commands)

    def work(i: int) -> None:
        results[i] = spawn_cli(*commands[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(commands))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# --- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if sshd_server.SSHD is None:
        pytest.skip("openssh-server is not installed")
    server = sshd_server.start(tmp_path_factory.mktemp("sshd-faults"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def interrupted(small_keras, tmp_path_factory) -> dict:
    """Ctrl-C (SIGINT to the edgekit process) during an int8 conversion, then the same
    command again. The fault is injected once the converter works in its temporary folder
    (``edgekit-*`` under the command's private TMPDIR); the rerun's model is what the SSH
    tests below send to the device."""
    root = tmp_path_factory.mktemp("ctrl-c")
    tmp, outdir = root / "tmp", root / "out"
    tmp.mkdir()
    outdir.mkdir()
    out = outdir / "m_int8.tflite"
    args = ["quantize", small_keras, "--mode", "int8", *CALIB, "-o", out]
    proc = _start(*args, env={"TMPDIR": str(tmp)})
    _wait_for(lambda: list(tmp.glob("edgekit-*")), proc)
    time.sleep(0.5)  # inside the conversion (SavedModel export, then the converter)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    doc = {"code": proc.returncode, "stderr": err, "stopped_s": time.monotonic() - sent,
           "left": _names(outdir), "temp_left": sorted(p.name for p in tmp.glob("edgekit-*"))}
    doc["rerun"] = spawn_cli(*args, env={"TMPDIR": str(tmp)})
    doc["out"] = out
    return doc


@pytest.fixture(scope="module")
def int8_model(interrupted) -> Path:
    assert interrupted["rerun"].returncode == 0, interrupted["rerun"].stderr[-2000:]
    return interrupted["out"]


# --- Ctrl-C during a conversion -----------------------------------------------------------
def test_ctrl_c_during_conversion_leaves_nothing_and_a_rerun_succeeds(interrupted):
    doc = interrupted
    assert doc["code"] == 130, doc["stderr"][-3000:]
    assert "interrupted" in doc["stderr"] and "Traceback" not in doc["stderr"]
    assert doc["stopped_s"] < 30  # stops promptly, not after finishing the conversion
    assert doc["left"] == []  # no m_int8.tflite, no sidecar, no .part file
    assert doc["temp_left"] == []  # edgekit's temporary folder for the converter is gone
    rerun = doc["rerun"]
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    out = doc["out"]
    assert _names(out.parent) == ["m_int8.tflite", "m_int8.tflite.json"]
    side = json.loads((out.parent / "m_int8.tflite.json").read_text())
    assert side["precision"] == "int8" and side["size_bytes"] == out.stat().st_size
    assert out.read_bytes()[4:8] == b"TFL3"


# --- a full disk under the output folder ---------------------------------------------------
@needs_root
def test_disk_full_is_one_line_exit_3_and_leaves_nothing(small_keras, int8_model, tmp_path):
    """Two real ENOSPC: a tmpfs too small for the model (ONNX export), and one with room for
    exactly the model but not its sidecar (int8 quantize; the model's size is known from the
    same command above). Neither may leave a file; after space is freed (remount), the same
    commands succeed."""
    pages = math.ceil(int8_model.stat().st_size / 4096)
    with _tmpfs(tmp_path / "tiny", 64 * 1024) as tiny, \
            _tmpfs(tmp_path / "exact", pages * 4096) as exact:
        commands = (["export", small_keras, "--format", "onnx", "-o", tiny / "m.onnx"],
                    ["quantize", small_keras, "--mode", "int8", *CALIB, "-o",
                     exact / "m_int8.tflite"])
        for proc, folder, name in zip(_parallel(*commands), (tiny, exact),
                                      ("m.onnx", "m_int8.tflite")):
            line = _one_error(proc.returncode, proc.stderr, 3)
            assert "No space left on device" in line and name in line
            assert _names(folder) == []  # no model, no sidecar, no .part file
        for folder in (tiny, exact):
            subprocess.run(["mount", "-o", "remount,size=16m", str(folder)], check=True)
        for proc, folder, name in zip(_parallel(*commands), (tiny, exact),
                                      ("m.onnx", "m_int8.tflite")):
            assert proc.returncode == 0, proc.stderr[-2000:]
            assert _names(folder) == [name, name + ".json"]
        # the model that did not fit is the one built above, byte for byte
        assert (exact / "m_int8.tflite").read_bytes() == int8_model.read_bytes()


# --- SSH: the connection killed ------------------------------------------------------------
def _profile(model: Path, sshd, *extra) -> list:
    return ["profile", model, *sshd.cli_args(), "--remote-python", sys.executable,
            "--threads", "1", "--warmup", "0", *extra]


@needs_sshd
def test_connection_killed_mid_transfer(sshd, int8_model, tmp_path):
    """The device's link trickles at 200 kB/s; the connection is killed once part of the
    model has arrived on the device."""
    size = int8_model.stat().st_size
    out = tmp_path / "result.json"

    def partly_sent() -> Path | None:
        path = _remote_file(sshd, "model.tflite")
        with contextlib.suppress(OSError):
            if path is not None and 0 < path.stat().st_size < size // 2:
                return path
        return None

    with _slow_link(sshd, 200_000):
        proc = _start(*_profile(int8_model, sshd, "--runs", "3", "-o", out))
        remote = _wait_for(partly_sent, proc)
        assert sshd.drop_connections() > 0
        _, err = proc.communicate(timeout=120)
    line = _one_error(proc.returncode, err, 3)
    assert sshd.host in line and "copying model.tflite" in line
    assert _names(tmp_path) == []  # no result, no .part file
    assert not remote.parent.exists()  # the device folder was removed after reconnecting
    rerun = run_cli(*_profile(int8_model, sshd, "--runs", "3", "-o", out))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(out.read_text())["settings"]["runner"] == "ssh"


@needs_sshd
def test_connection_killed_mid_run_through_the_cli(sshd, int8_model, tmp_path):
    out = tmp_path / "result.json"
    proc = _start(*_profile(int8_model, sshd, "--runs", "1000000", "-o", out))
    harness = _wait_for(lambda: _remote_file(sshd, "harness.py")
                        and _remote_file(sshd, "job.json"), proc)
    time.sleep(0.5)  # the harness is timing
    assert sshd.drop_connections() > 0
    _, err = proc.communicate(timeout=120)
    line = _one_error(proc.returncode, err, 3)
    assert sshd.host in line and "harness run" in line
    assert _names(tmp_path) == []
    assert not harness.parent.exists()
    rerun = run_cli(*_profile(int8_model, sshd, "--runs", "3", "-o", out))
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads(out.read_text())["latency_ms"]["count"] == 3


# --- SSH: a device that stops answering ----------------------------------------------------
@needs_sshd
def test_device_that_freezes_mid_run_is_given_up_on(sshd, int8_model, tmp_path):
    """Every process of the device's session is stopped (SIGSTOP): the TCP connection stays
    up, nothing answers. The user's --ssh-option keep-alive settings decide how soon ssh gives
    up (edgekit's defaults would wait 15 s)."""
    out = tmp_path / "result.json"
    keepalive = ["--ssh-option", "ServerAliveInterval=1", "--ssh-option", "ServerAliveCountMax=2"]
    proc = _start(*_profile(int8_model, sshd, "--runs", "1000000", "-o", out, *keepalive))
    harness = _wait_for(lambda: _remote_file(sshd, "harness.py")
                        and _remote_file(sshd, "job.json"), proc)
    frozen = sshd.descendants()
    try:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        start = time.monotonic()
        _, err = proc.communicate(timeout=120)
        waited = time.monotonic() - start
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    line = _one_error(proc.returncode, err, 3)
    assert sshd.host in line and "harness run" in line
    assert waited < 12, waited
    assert _names(tmp_path) == []
    assert not harness.parent.exists()  # removed over a fresh connection
    rerun = run_cli(*_profile(int8_model, sshd, "--runs", "3", "-o", out, *keepalive))
    assert rerun.returncode == 0, rerun.stderr[-2000:]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="the ssh client is not installed")
def test_device_that_accepts_but_never_answers(int8_model, tmp_path):
    """A TCP port that accepts connections and never sends the SSH banner: the user's
    ConnectTimeout holds (edgekit's default is 10 s)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        start = time.monotonic()
        proc = run_cli("profile", int8_model, "--host", f"{getpass.getuser()}@127.0.0.1",
                       "--port", str(port), "--ssh-option", "ConnectTimeout=2", "--runs", "1",
                       "-o", tmp_path / "r.json")
        waited = time.monotonic() - start
    line = _one_error(proc.returncode, proc.stderr, 3)
    assert "cannot connect" in line and "timed out" in line
    assert waited < 9, waited
    assert _names(tmp_path) == []


@needs_sshd
def test_harness_that_hangs_times_out_and_the_folder_is_removed(sshd, int8_model, tmp_path):
    """The device's Python hangs (a stand-in that sleeps): `--timeout 2` stops it on the
    device (``timeout``) and says so; the device folder goes, nothing keeps running there, and
    the same command with a Python that works succeeds."""
    hang = tmp_path / "python-that-hangs"
    hang.write_text("#!/bin/sh\nexec sleep 300\n")
    hang.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    args = ["profile", int8_model, *sshd.cli_args(), "--threads", "1", "--warmup", "0",
            "--runs", "3", "--timeout", "2", "-o", out / "r.json"]
    start = time.monotonic()
    proc = _start(*args, "--remote-python", hang)
    folder = _wait_for(lambda: _remote_file(sshd, "job.json"), proc).parent
    _, err = proc.communicate(timeout=120)
    waited = time.monotonic() - start
    line = _one_error(proc.returncode, err, 3)
    assert "harness run timed out after 2 s on the device" in line, line
    assert waited < 15, waited
    assert not folder.exists() and _names(out) == []
    assert not any(str(hang) in " ".join(a) for a in _session_args(sshd).values())
    rerun = run_cli(*args, "--remote-python", sys.executable)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert json.loads((out / "r.json").read_text())["latency_ms"]["count"] == 3


def test_local_run_past_its_timeout_is_stopped(int8_model, tmp_path):
    """On this machine: a real run that would take hours (10^8 timed runs) under
    `--timeout 2` is stopped, with one line, exit 3, no result and no work folder left."""
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    out.mkdir()
    start = time.monotonic()
    proc = spawn_cli("profile", int8_model, "--runs", "100000000", "--timeout", "2",
                   "-o", out / "r.json", env={"TMPDIR": str(tmp)})
    waited = time.monotonic() - start
    line = _one_error(proc.returncode, proc.stderr, 3)
    assert "timed out after 2 s" in line and "--timeout" in line, line
    assert waited < 30, waited
    assert _names(out) == [] and _names(tmp) == []
