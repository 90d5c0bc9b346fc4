"""SSHRunner: runs the harness on a Linux device (Raspberry Pi, Jetson, any host) over SSH.

The system OpenSSH client does the transport (``ssh`` only, no ``scp``/SFTP on the device):
files travel as ``cat > FILE`` on a stdin stream, results come back as ``cat FILE``. One
master connection (ControlMaster, private socket folder) is opened in ``prepare`` and reused,
so each step costs a round trip, not a handshake. Why not a Python SSH library: the system
client already reads the user's ``~/.ssh/config``, agents, jump hosts and known_hosts, which
is what people who profile on their own devices rely on.

Safety: every remote word is ``shlex.quote``d (the remote side always goes through a shell);
the host cannot start with ``-`` (it would be read as an option); ``BatchMode=yes`` means no
password prompt can hang a CI job. Failures: ssh's own exit status 255 (cannot connect,
authentication refused, connection dropped) and timeouts raise ``EnvironmentProblem``
(exit 3); a result is read only after the harness exited 0, so a dropped run leaves no
partial result. The private folder on the device (``mktemp -d``) is removed in ``cleanup``;
if the device is gone by then, the error says which folder was left behind.
"""

from __future__ import annotations

import io
import json
import math
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.artifacts import Artifact
from ..core.errors import BadInput, EnvironmentProblem
from .base import Runner, harness_path

_HOST = re.compile(r"^(?:[\w.+-]+@)?(?:[\w.-]+|\[[0-9a-fA-F:.]+\])$")
LOST = 255  # ssh's exit status for its own failures
TIMED_OUT = 124  # coreutils/busybox `timeout`: the command ran past its limit


def check_host(host: str) -> str:
    """``user@host`` / ``host`` / ``user@[ipv6]``, never an option or a shell word."""
    if not host or host.startswith("-") or not _HOST.match(host):
        raise BadInput(f"--host {host!r} is not a host name (expected user@host or host)")
    return host


class SSHRunner(Runner):
    name = "ssh"

    def __init__(self, host: str, *, port: int | None = None, identity: Path | None = None,
                 options: Sequence[str] = (), python: str = "python3",
                 timeout_s: float = 3600.0, connect_timeout_s: float = 10.0,
                 engine: str = "harness", trtexec: str | None = None,
                 trt_precision: str | None = None):
        self.host = check_host(host)
        if engine not in ("harness", "tensorrt"):
            raise BadInput(f"--engine {engine!r}: harness or tensorrt")
        if trt_precision is not None and (engine != "tensorrt" or
                                          trt_precision not in ("fp32", "fp16", "int8")):
            raise BadInput(f"--trt-precision {trt_precision!r}: fp32, fp16 or int8, with "
                           "--engine tensorrt")
        self.engine, self.trtexec, self.trt_precision = engine, trtexec, trt_precision
        if port is not None and not 0 < port < 65536:
            raise BadInput(f"--port {port} is not a TCP port")
        for o in options:
            if not re.match(r"^[A-Za-z]+=", o):
                raise BadInput(f"--ssh-option {o!r} is not Key=Value")
        if shutil.which("ssh") is None:
            raise EnvironmentProblem("the ssh client is not installed",
                                     hint="apt-get install openssh-client")
        self.port, self.identity, self.options = port, identity, list(options)
        self.python, self.timeout_s, self.connect_timeout_s = python, timeout_s, connect_timeout_s
        self._ctl: Path | None = None  # local folder of the master connection's socket
        self.remote: str | None = None  # private folder on the device
        self.job: dict[str, Any] = {}

    # --- transport -------------------------------------------------------------------------
    def _argv(self, words: Sequence[str], master: bool = False) -> list[str]:
        argv = self._options(master)
        if master:  # authenticate, go to the background; exits after 5 idle minutes if orphaned
            return argv + ["-N", "-f", "-o", "ControlPersist=300", "--", self.host]
        return argv + ["--", self.host, " ".join(shlex.quote(w) for w in words)]

    def _options(self, master: bool = False) -> list[str]:
        # ssh keeps the *first* value it is given for an option: edgekit's own settings that
        # must hold come first, then the user's --ssh-option, then defaults the user may
        # override (ConnectTimeout, ServerAlive*: how soon a silent device is given up on).
        argv = ["ssh", "-o", "BatchMode=yes"]
        if self._ctl is not None:
            argv += ["-o", f"ControlPath={self._ctl / 'master'}",
                     "-o", "ControlMaster=" + ("yes" if master else "no")]
        if self.port:
            argv += ["-p", str(self.port)]
        if self.identity:
            argv += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        for o in self.options:
            argv += ["-o", o]
        return argv + ["-o", f"ConnectTimeout={self.connect_timeout_s:.0f}",
                       "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]

    def _ssh(self, words: Sequence[str], stdin: bytes | None = None,
             timeout_s: float | None = None, what: str = "",
             device_timeout_s: int | None = None) -> bytes:
        """Run ``words`` on the device; ``device_timeout_s``: they run under the device's
        ``timeout`` command with this limit (its exit status 124 means it fired)."""
        timeout_s = timeout_s or self.timeout_s
        try:
            proc = subprocess.run(self._argv(words), input=stdin or b"", capture_output=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(f"ssh {self.host}: {what or words[0]} timed out after "
                                     f"{timeout_s:.0f} s") from None
        if proc.returncode == LOST:  # ssh itself failed: refused, lost, authentication
            raise EnvironmentProblem(f"ssh {self.host}: {_ssh_message(proc.stderr)}"
                                     + (f" (during {what})" if what else ""))
        if device_timeout_s is not None and proc.returncode == TIMED_OUT:
            raise EnvironmentProblem(f"{self.host}: {what or words[0]} timed out after "
                                     f"{device_timeout_s} s on the device and was stopped",
                                     hint="--timeout sets the limit")
        if proc.returncode != 0:
            last = _last_line(proc.stderr)
            hint = None
            if last.startswith("ModuleNotFoundError"):  # no numpy / TFLite runtime there
                hint = (f"`edgekit lab prepare --host {self.host}` installs numpy and "
                        "ai-edge-litert there from wheels this machine downloads (no internet "
                        "or pip needed on the device); then give --remote-python the "
                        "launcher it prints")
            raise EnvironmentProblem(f"{self.host}: {what or words[0]} failed: {last}",
                                     hint=hint)
        return proc.stdout

    def _connect(self) -> None:
        self._ctl = Path(tempfile.mkdtemp(prefix="edgekit-ssh-"))
        log = self._ctl / "master.log"
        try:
            with open(log, "wb") as err:  # a file, not a pipe: the master outlives this call
                rc = subprocess.run(self._argv([], master=True), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    timeout=self.connect_timeout_s + 30).returncode
        except subprocess.TimeoutExpired:
            rc, detail = LOST, f"no answer within {self.connect_timeout_s + 30:.0f} s"
        else:
            detail = _last_line(log.read_bytes())
        if rc != 0:
            shutil.rmtree(self._ctl, ignore_errors=True)
            self._ctl = None
            raise EnvironmentProblem(f"cannot connect to {self.host}: {detail}",
                                     hint="check the host, --port, --identity and that "
                                          "`ssh HOST true` works without a password")

    def _put(self, data: bytes, name: str) -> str:
        path = f"{self.remote}/{name}"
        self._ssh(["sh", "-c", 'cat > "$1"', "sh", path], stdin=data, what=f"copying {name}")
        return path

    def _get(self, name: str) -> bytes:
        return self._ssh(["cat", f"{self.remote}/{name}"], what=f"fetching {name}")

    # --- Runner ------------------------------------------------------------------------------
    def check(self) -> None:
        """The device answers a command now (one connection, ``ConnectTimeout`` bounded)."""
        self._ssh(["true"], timeout_s=self.connect_timeout_s + 20, what="a health check")

    def prepare(self, artifact: Artifact, input_shape: list[int], preprocessing: dict,
                nchw: bool = False) -> None:
        if self._ctl is None:
            self._connect()
        out = self._ssh(["mktemp", "-d", "-t", "edgekit.XXXXXXXX"], timeout_s=60,
                        what="creating a private folder").decode().strip()
        if not re.match(r"^/[\w./-]*edgekit\.\w+$", out):
            raise EnvironmentProblem(f"{self.host}: mktemp returned {out[:80]!r}")
        self.remote = out
        suffix = {"tflite": ".tflite", "onnx": ".onnx", "keras": ".keras"}[artifact.format]
        model = self._put(Path(artifact.path).read_bytes(), "model" + suffix)
        self._put(harness_path().read_bytes(), "harness.py")
        self.job = {"model": model, "format": artifact.format, "precision": artifact.precision,
                    "input_shape": [1, *input_shape[1:]], "preprocessing": preprocessing,
                    "nchw": nchw, "out": self.remote,
                    "providers": getattr(self, "providers", None)}

    def _call(self, **job: Any) -> dict[str, Any]:
        assert self.remote is not None, "prepare() first"
        path = self._put(json.dumps({**self.job, **job}).encode(), "job.json")
        # `timeout` on the device too: a run the client gave up on does not keep the CPU busy
        limit = max(1, math.ceil(self.timeout_s))  # `timeout 0` would mean no limit
        self._ssh(["env", "TF_CPP_MIN_LOG_LEVEL=3", "timeout", str(limit),
                   self.python, f"{self.remote}/harness.py", path],
                  timeout_s=limit + 30, what="the harness run", device_timeout_s=limit)
        return json.loads(self._get("result.json"))

    def run(self, n_warmup: int, n_runs: int, threads: int | None) -> dict[str, Any]:
        if self.engine == "tensorrt":
            return self._trtexec(n_warmup, n_runs)
        return self._call(warmup=n_warmup, runs=n_runs, threads=threads, inputs=None)

    def _trtexec(self, n_warmup: int, n_runs: int) -> dict[str, Any]:
        """Time with TensorRT's trtexec (Jetson); the facts of the device from the harness."""
        from . import trtexec

        if self.job.get("format") != "onnx":
            raise BadInput("--engine tensorrt times .onnx models (trtexec --onnx)")
        candidates = [self.trtexec] if self.trtexec else list(trtexec.CANDIDATES)
        found = self._ssh(["sh", "-c", 'for t in "$@"; do command -v "$t" && break; done; true',
                           "sh", *candidates],
                          timeout_s=30, what="looking for trtexec").decode().split()
        if not found:
            raise EnvironmentProblem(f"{self.host}: trtexec is not installed",
                                     hint="JetPack puts it in /usr/src/tensorrt/bin")
        argv = trtexec.command(found[0], self.job["model"], runs=n_runs,
                               warmup_ms=max(200, 20 * n_warmup),
                               precision=self.trt_precision or self.job.get("precision"))
        out = self._ssh(argv, what="trtexec").decode(errors="replace")
        parsed = trtexec.parse(out, n_runs)
        try:  # the harness knows the device's facts (needs onnxruntime there)
            facts = self._call(warmup=0, runs=0, threads=None, inputs=None)
        except EnvironmentProblem:
            machine = self._ssh(["uname", "-m"], timeout_s=30, what="uname").decode().strip()
            facts = {"cpu": machine, "cores": None, "machine": machine, "system": "Linux",
                     "threads": None, "init_ms": float("nan"), "rss_start_mb": 0.0,
                     "rss_loaded_mb": 0.0, "peak_rss_timing_mb": None, "python": None,
                     "numpy": None}
        return {**facts, **parsed, "latency_ms": None, "runtime": "tensorrt (trtexec)",
                "runtime_version": parsed.get("runtime_version", "unknown"),
                "command": " ".join(argv), "memory_note":
                "memory of the harness process (trtexec does not report it)"}

    def evaluate(self, images: np.ndarray, threads: int | None) -> np.ndarray:
        return self.measure(0, 0, threads, images)[1]

    def measure(self, n_warmup: int, n_runs: int, threads: int | None,
                images: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
        """Timing and scores from one harness run on the device (trtexec times on its own)."""
        if images is None or (self.engine == "tensorrt" and n_runs):
            return super().measure(n_warmup, n_runs, threads, images)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(images, dtype=np.uint8))
        inputs = self._put(buf.getvalue(), "inputs.npy")
        timing = self._call(warmup=n_warmup, runs=n_runs, threads=threads, inputs=inputs)
        return timing, np.load(io.BytesIO(self._get("outputs.npy")))

    def cleanup(self) -> None:
        """Remove the device folder; keep the connection for the next prepare()."""
        remote, self.remote = self.remote, None
        if remote is not None:
            try:
                self._ssh(["rm", "-rf", "--", remote], timeout_s=30, what="cleaning up")
            except EnvironmentProblem as e:
                raise EnvironmentProblem(f"{e} (left {remote} on {self.host})") from None

    def close(self) -> None:
        """Also end the master connection."""
        try:
            self.cleanup()
        finally:
            if self._ctl is not None:
                subprocess.run(self._options() + ["-O", "exit", "--", self.host],
                               capture_output=True, timeout=15)
                shutil.rmtree(self._ctl, ignore_errors=True)
                self._ctl = None

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"runner": self.name, "host": self.host, "port": self.port,
                **({"engine": self.engine} if self.engine != "harness" else {}),
                **({"trt_precision": self.trt_precision} if self.trt_precision else {})}


_SSH_LINES = ("ssh:", "connection", "client_loop", "received disconnect", "permission denied",
              "host key", "kex_exchange", "broken pipe", "timeout", "could not resolve")


def _ssh_message(stderr: bytes) -> str:
    """ssh's own complaint among the remote command's stderr, else a plain statement."""
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    mine = [ln for ln in lines if ln.lower().startswith(_SSH_LINES)]
    return mine[-1][:300] if mine else "the connection was lost"


def _last_line(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode(errors="replace").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(no message)"
