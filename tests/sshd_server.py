"""A real OpenSSH server on loopback for the SSH runner's tests and benchmark.

Debian's openssh-server, started with its own port, host key, authorized key and config
(``UsePAM no``), no system configuration touched. ``Loopback.options`` are the client-side
settings that make ``ssh`` trust exactly this server's host key.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.path.exists(p)), None)


@dataclass
class Loopback:
    proc: subprocess.Popen
    port: int
    host: str  # user@127.0.0.1
    identity: Path
    options: list[str]  # ssh -o Key=Value
    device_tmp: Path  # the device's TMPDIR, where the runner makes its private folders

    def cli_args(self) -> list[str]:
        out = ["--host", self.host, "--port", str(self.port), "--identity", str(self.identity)]
        for o in self.options:
            out += ["--ssh-option", o]
        return out

    def descendants(self) -> list[int]:
        """PIDs of every process the server started (sessions and what they run)."""
        return descendants(self.proc.pid)

    def drop_connections(self) -> int:
        """SIGKILL every session (and its commands), as a device that vanishes would."""
        pids = self.descendants()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        self.drop_connections()
        self.proc.terminate()
        self.proc.wait(10)


def descendants(root: int) -> list[int]:
    """PIDs of every process below ``root`` (children, their children, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path) -> Loopback:
    """Start sshd on a free loopback port; the caller stops it."""
    assert SSHD, "openssh-server is not installed"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)],
                       check=True)
    auth = folder / "authorized_keys"
    auth.write_text((folder / "client_key.pub").read_text())
    auth.chmod(0o600)
    port = _free_port()
    device_tmp = folder / "device_tmp"  # this server's own: tests on other workers use /tmp
    device_tmp.mkdir(exist_ok=True)
    cfg = folder / "sshd_config"
    cfg.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {folder / 'host_key'}",
        f"AuthorizedKeysFile {auth}", "UsePAM no", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
        f"PidFile {folder / 'sshd.pid'}", "StrictModes no", "LogLevel ERROR",
        f"SetEnv TMPDIR={device_tmp}", ""]))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation folder
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} " + (folder / "host_key.pub").read_text())
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=open(folder / "sshd.log", "wb"))
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("sshd exited: " + (folder / "sshd.log").read_text()[-500:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    options = [f"UserKnownHostsFile={known}", "StrictHostKeyChecking=yes",
               "GlobalKnownHostsFile=/dev/null"]
    return Loopback(proc, port, f"{getpass.getuser()}@127.0.0.1", folder / "client_key", options,
                    device_tmp)
