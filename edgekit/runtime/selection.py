"""Which Runner a stage's options name, and its configuration: the one place that decides.

``options`` is any object with the runner options as attributes (a stage's options model;
those it lacks count as not given): ``runner``, ``host``, ``port``, ``identity``,
``ssh_option``, ``remote_python``, ``serial``, ``benchmark_binary``, ``accelerator``,
``engine``, ``trtexec``, ``trt_precision``, ``provider``, ``timeout``. Each runner kind takes
its own set of them (``CONFIG``); an option of another kind is refused, naming both.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from ..core.errors import BadInput

# onnxruntime execution providers by --provider; the CPU stays last for the nodes a GPU
# provider does not take, as onnxruntime's documentation lists them
ORT_PROVIDERS = {"cpu": None,
                 "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                 "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                              "CPUExecutionProvider"]}

# runner kind -> {constructor keyword: option name}; timeout applies to every kind
CONFIG = {
    "ssh": {"port": "port", "identity": "identity", "options": "ssh_option",
            "python": "remote_python", "engine": "engine", "trtexec": "trtexec",
            "trt_precision": "trt_precision"},
    "adb": {"benchmark_binary": "benchmark_binary", "accelerator": "accelerator"},
    "local": {},
    "emulator": {},
}
_DEFAULTS = {"remote_python": "python3", "accelerator": "cpu", "engine": "harness",
             "provider": "cpu", "ssh_option": []}


def _get(options: Any, name: str) -> Any:
    return getattr(options, name, _DEFAULTS.get(name))


def runner_kind(options: Any, device=None) -> str:
    """--runner, else ssh when --host is given, adb when --serial/--benchmark-binary is, else
    the one the device profile names (``runner:``), else local."""
    adb = _get(options, "serial") or _get(options, "benchmark_binary")
    return _get(options, "runner") or ("ssh" if _get(options, "host") else "adb" if adb else (
        device.runner if device and device.runner else "local"))


def make_runner(options: Any, device=None):
    """The Runner ``options`` name, configured, with its onnxruntime providers set."""
    provider = _get(options, "provider")
    if provider not in ORT_PROVIDERS:
        raise BadInput(f"unknown --provider '{provider}' (known: {', '.join(ORT_PROVIDERS)})")
    timeout_s = _get(options, "timeout")
    if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
        raise BadInput(f"--timeout must be a positive number of seconds (got {timeout_s})")
    runner = _configured(options, device, {} if timeout_s is None else {"timeout_s": timeout_s})
    if provider != "cpu" and runner.name not in ("local", "ssh"):
        raise BadInput(f"--provider {provider} applies to onnxruntime on the local or ssh "
                       f"runner, not {runner.name}")
    runner.providers = ORT_PROVIDERS[provider]
    return runner


def _configured(options: Any, device, limit: dict):
    from ..core.registry import RUNNERS

    host, serial, binary = (_get(options, k) for k in ("host", "serial", "benchmark_binary"))
    if host and (serial or binary):
        raise BadInput("--host (ssh) and --serial/--benchmark-binary (adb) exclude each other")
    name = runner_kind(options, device)
    if _get(options, "runner") is None and name not in RUNNERS:
        raise BadInput(f"device '{device.name}' needs the {name} runner, which this edgekit "
                       f"does not have yet (runners: {', '.join(sorted(RUNNERS))})")
    cls = RUNNERS.resolve(name)
    config = {kw: _get(options, opt) for kw, opt in CONFIG.get(name, {}).items()}
    if name == "ssh":
        if not host:
            where = f"device '{device.name}' is reached over SSH" if device else "--runner ssh"
            raise BadInput(f"{where}: pass --host user@host")
        return cls(host, **config, **limit)
    _refuse_others(options, name)
    if name == "adb":
        return cls(serial, device=device, **config, **limit)
    return cls(**limit)


def _refuse_others(options: Any, name: str) -> None:
    """Options of the ssh or adb runner given to another kind: one line naming both."""
    if (_get(options, "engine") != "harness" or _get(options, "trtexec")
            or _get(options, "trt_precision")):
        raise BadInput(f"--engine tensorrt / --trtexec / --trt-precision run on a Jetson over "
                       f"SSH (--host), not with the {name} runner")
    if any(_get(options, k) for k in ("host", "port", "identity", "ssh_option")):
        raise BadInput(f"--host/--port/--identity/--ssh-option need the ssh runner, not {name}")
    if name != "adb" and (_get(options, "serial") or _get(options, "benchmark_binary")):
        raise BadInput(f"--serial/--benchmark-binary need the adb runner, not {name}")
    if name != "adb" and _get(options, "accelerator") != "cpu":
        raise BadInput(f"--accelerator {_get(options, 'accelerator')}: the {name} runner "
                       "runs on the CPU")


def runner_options(**values: Optional[Any]) -> Any:
    """An options object for ``make_runner`` from keywords (callers without a model)."""
    from types import SimpleNamespace

    return SimpleNamespace(**values)
