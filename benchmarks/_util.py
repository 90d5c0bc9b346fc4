"""Helpers shared by the benchmark scripts: run the real CLI, time commands."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

EDGEKIT = [sys.executable, "-m", "edgekit"]


def cli(*args, json_out: bool = False):
    proc = subprocess.run([*EDGEKIT, *map(str, args)] + (["--json"] if json_out else []),
                          capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode:
        sys.exit(f"edgekit {' '.join(map(str, args))} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout) if json_out else proc


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def median(xs):
    return statistics.median(xs)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}"


def out_dir(name: str) -> Path:
    d = Path(os.environ.get("EDGEKIT_BENCH_DIR", "/tmp/edgekit-bench")) / name
    d.mkdir(parents=True, exist_ok=True)
    return d
