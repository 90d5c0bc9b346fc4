"""``edgekit lab prepare`` on a real loopback sshd: a fresh user with the system's bare Python
(no numpy, no TFLite runtime) gets them from wheels this machine holds, with no network:
the wheels come from the cache that ``edgekit lab wheels`` fills (``.ci/run`` does, as it sets
up the emulator); without it the test skips, saying so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sshd_server  # noqa: E402
from conftest import run_cli  # noqa: E402

BARE = "/usr/bin/python3"
VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _bare_python() -> bool:
    if not os.path.exists(BARE):
        return False
    probe = subprocess.run([BARE, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); "
                            "import numpy"], capture_output=True, text=True)
    return probe.stdout.strip() == VERSION and "No module named" in probe.stderr


def _wheels() -> bool:
    from edgekit.cluster.prepare import wheel_dir

    import platform

    glibc = platform.libc_ver()[1]  # the bare Python's: this machine's
    return any(wheel_dir(VERSION, os.uname().machine, glibc).glob("ai_edge_litert-*.whl"))


pytestmark = [
    pytest.mark.skipif(sshd_server.SSHD is None, reason="openssh-server is not installed"),
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                       reason="needs root to add a fresh user"),
    pytest.mark.skipif(not _bare_python(), reason=f"{BARE} is not a Python {VERSION} "
                       "without numpy"),
    pytest.mark.skipif(not _wheels(), reason="no wheels in the cache: run `edgekit lab wheels "
                       f"--python-version {VERSION} --machine {os.uname().machine} --glibc "
                       "GLIBC` first"),
]


@pytest.fixture
def fresh_device():
    """A new user on a loopback sshd: home folder, nothing installed, the system's Python."""
    user = f"ek{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True)
    subprocess.run(["usermod", "-p", "*", user], check=True)  # key login, no password
    # the server's files are root's: the user must reach its key list (pytest's own temporary
    # folders are root's only) and use its TMPDIR
    folder = Path(tempfile.mkdtemp(prefix="edgekit-prepare-"))
    folder.chmod(0o755)
    server = sshd_server.start(folder / "sshd")
    (folder / "sshd").chmod(0o755)
    (folder / "sshd" / "authorized_keys").chmod(0o644)
    server.device_tmp.chmod(0o1777)
    try:
        yield server, user
    finally:
        server.stop()
        subprocess.run(["userdel", "-r", user], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_prepare_a_bare_device_then_profile_on_it(fresh_device, trained_int8):
    server, user = fresh_device
    target = ["--host", f"{user}@127.0.0.1", *server.cli_args()[2:]]
    before = run_cli("profile", trained_int8, *target, "--remote-python", BARE, "--runs", "2")
    assert before.returncode == 3
    assert "No module named 'numpy'" in before.stderr
    assert "edgekit lab prepare" in before.stderr  # the message names the fix

    proc = run_cli("lab", "prepare", *target, "--python", BARE, "--json", check=True)
    doc = json.loads(proc.stdout)
    home = Path(f"/home/{user}")
    assert doc["python"] == f"{home}/.edgekit/bin/python"
    assert (doc["version"], doc["machine"]) == (VERSION, os.uname().machine)
    assert set(doc["installed"]) == {"numpy", "ai_edge_litert"}
    assert any(w.startswith("ai_edge_litert-") for w in doc["wheels"])
    site = home / ".edgekit" / "site"
    assert (site / "numpy").is_dir() and not (home / ".edgekit" / "site.part").exists()
    assert site.stat().st_uid == int(subprocess.check_output(["id", "-u", user]))
    assert not (home / ".local").exists()  # nothing outside ~/.edgekit

    after = run_cli("profile", trained_int8, *target, "--remote-python", doc["python"],
                    "--runs", "5", "--data", "fashion-mnist-sample:test", "--limit", "100",
                    "--json", check=True)
    result = json.loads(after.stdout)
    assert result["settings"]["runner"] == "ssh" and result["accuracy"]["n"] == 100
    assert result["accuracy"]["top1"] > 30  # the shared model scores ~68% on this split
