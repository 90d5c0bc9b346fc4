"""LocalRunner: runs the harness in a child process on this machine.

A child process keeps the measurement honest: its peak memory is the model's runtime alone,
not edgekit's (TensorFlow is not imported there for .tflite and .onnx models)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import Artifact
from ..core.errors import EnvironmentProblem
from .base import Runner, harness_path


class LocalRunner(Runner):
    name = "local"

    def __init__(self, timeout_s: float = 3600.0):
        self.timeout_s = timeout_s
        self.workdir: Path | None = None
        self.job: dict[str, Any] = {}
        self.last_result: dict[str, Any] = {}  # the harness result of the last measure()

    # --- where files live and how the harness starts (the emulator runner overrides these)
    def _new_workdir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="edgekit-run-"))

    def _inside(self, path: Path) -> str:
        """``path`` as the harness process sees it."""
        return str(path)

    def _stage_model(self, path: Path) -> Path:
        return Path(path).resolve()

    def _argv(self, job_path: Path) -> list[str]:
        return [sys.executable, str(harness_path()), str(job_path)]

    def prepare(self, artifact: Artifact, input_shape: list[int], preprocessing: dict,
                nchw: bool = False) -> None:
        self.workdir = self._new_workdir()
        self.job = {"model": self._inside(self._stage_model(Path(artifact.path))),
                    "format": artifact.format, "input_shape": [1, *input_shape[1:]],
                    "preprocessing": preprocessing, "nchw": nchw,
                    "out": self._inside(self.workdir),
                    "providers": getattr(self, "providers", None)}

    def _call(self, **job: Any) -> dict[str, Any]:
        assert self.workdir is not None, "prepare() first"
        job_path = self.workdir / "job.json"
        job_path.write_text(json.dumps({**self.job, **job}))
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        try:
            proc = subprocess.run(self._argv(job_path), capture_output=True, text=True,
                                  timeout=self.timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise EnvironmentProblem(f"the model run timed out after {self.timeout_s:g} s and "
                                     "was stopped", hint="--timeout sets the limit") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise EnvironmentProblem(f"the harness failed on {self.job['model']}: {last[:300]}")
        return json.loads((self.workdir / "result.json").read_text())

    def run(self, n_warmup: int, n_runs: int, threads: int | None) -> dict[str, Any]:
        return self._call(warmup=n_warmup, runs=n_runs, threads=threads, inputs=None)

    def evaluate(self, images: np.ndarray, threads: int | None) -> np.ndarray:
        return self.measure(0, 0, threads, images)[1]

    def measure(self, n_warmup: int, n_runs: int, threads: int | None,
                images: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
        """Timing and scores from one harness process: a second process would import the
        runtime again (TensorFlow, for a Keras model: about 6 s here)."""
        if images is None:
            return self.run(n_warmup, n_runs, threads), None
        assert self.workdir is not None, "prepare() first"
        inputs = self.workdir / "inputs.npy"
        np.save(inputs, np.ascontiguousarray(images, dtype=np.uint8))
        self.last_result = self._call(warmup=n_warmup, runs=n_runs, threads=threads,
                                      inputs=self._inside(inputs))
        return self.last_result, np.load(self.workdir / "outputs.npy")

    def cleanup(self) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
