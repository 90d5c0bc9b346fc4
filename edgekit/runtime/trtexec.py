"""TensorRT's ``trtexec`` on a Jetson (through the SSH runner): command line and output.

``trtexec --onnx=MODEL`` builds an engine for the device's GPU and times it; edgekit asks for
``--avgRuns=1`` so that its statistics are per inference, and reads the performance summary:
``Latency`` (host-measured, input and output transfers included: what an application sees)
becomes the result's latency, ``GPU Compute Time`` is kept beside it. Both lines print
min/max/mean/median and percentiles in milliseconds (older TensorRT: 99% only).
Accuracy still runs through the harness (onnxruntime on the device).
"""

from __future__ import annotations

import re
from typing import Any

from ..core.errors import EnvironmentProblem

# where JetPack installs it (not on the PATH by default)
CANDIDATES = ("trtexec", "/usr/src/tensorrt/bin/trtexec")
_STAT = r"(min|max|mean|median|percentile\(\d+%\)) = ([0-9.]+(?:e[+-]?\d+)?) ms"


# int8: a QDQ model's quantized layers run in int8 and ``--fp16`` lets the layers left in
# float run in half precision rather than fp32 (TensorRT developer guide, "Explicit
# Quantization": precision flags still enable the kernels the builder may choose).
PRECISION_FLAGS = {"fp16": ["--fp16"], "int8": ["--int8", "--fp16"], "fp32": []}


def command(binary: str, model: str, *, runs: int, warmup_ms: int, precision: str | None
            ) -> list[str]:
    flags = PRECISION_FLAGS.get(precision or "", [])
    return [binary, f"--onnx={model}", f"--iterations={runs}", f"--warmUp={warmup_ms}",
            "--duration=0", "--avgRuns=1", *flags]


def build_command(model: str, precision: str, binary: str = "trtexec", runs: int = 200,
                  warmup_ms: int = 500) -> list[str]:
    """The command to build, save and time a TensorRT engine from ``model`` on the device."""
    engine = model.rsplit(".", 1)[0] + f"_{precision}.engine"
    return [*command(binary, model, runs=runs, warmup_ms=warmup_ms, precision=precision),
            f"--saveEngine={engine}"]


def _summary(text: str, label: str) -> dict[str, float] | None:
    m = re.search(rf"\] {re.escape(label)}: (min = .*)$|^{re.escape(label)}: (min = .*)$",
                  text, re.M)
    if not m:
        return None
    names = {"min": "min", "max": "max", "mean": "mean", "median": "p50"}
    out = {}
    for key, value in re.findall(_STAT, m.group(1) or m.group(2)):
        pct = re.match(r"percentile\((\d+)%\)", key)
        out[f"p{pct.group(1)}" if pct else names[key]] = float(value)
    return out


def parse(text: str, runs: int) -> dict[str, Any]:
    latency = _summary(text, "Latency")
    if latency is None:
        tail = (text.strip().splitlines() or ["(no output)"])[-1]
        raise EnvironmentProblem(f"trtexec printed no performance summary: {tail[:200]}")
    out: dict[str, Any] = {"latency_summary": {"count": runs, **latency}}
    gpu = _summary(text, "GPU Compute Time")
    if gpu:
        out["gpu_compute_ms"] = gpu
    m = re.search(r"Throughput: ([0-9.]+(?:e[+-]?\d+)?) qps", text)
    if m:
        out["throughput_qps"] = float(m.group(1))
    m = re.search(r"TensorRT version: ([\d.]+)", text) or re.search(r"\[TensorRT v(\d+)\]", text)
    if m:
        out["runtime_version"] = m.group(1)
    return out
