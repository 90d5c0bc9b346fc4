"""The one Runner interface. Runners exchange files and JSON with the harness, never live
objects, so the same harness serves this machine, SSH hosts and the Arm64 emulator."""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import Artifact


class Runner(abc.ABC):
    """prepare(artifact) -> run(...) / evaluate(images) -> cleanup()."""

    name: str = "runner"
    latency_meaningful: bool = True  # False where timings say nothing about a device (qemu)
    latency_note: str = ""  # why, when they do not

    @abc.abstractmethod
    def prepare(self, artifact: Artifact, input_shape: list[int], preprocessing: dict,
                nchw: bool = False) -> None:
        """Make the model (and harness) available where it will run."""

    @abc.abstractmethod
    def run(self, n_warmup: int, n_runs: int, threads: int | None) -> dict[str, Any]:
        """Time ``n_runs`` batch-1 inferences; returns the harness result (times in ms)."""

    @abc.abstractmethod
    def evaluate(self, images: np.ndarray, threads: int | None) -> np.ndarray:
        """Scores (N, classes) for uint8 images already sized to the model input."""

    def measure(self, n_warmup: int, n_runs: int, threads: int | None,
                images: np.ndarray | None = None) -> tuple[dict[str, Any], np.ndarray | None]:
        """``run``, then ``evaluate`` on ``images`` when given. A runner whose harness does
        both in one process overrides it (the harness reads its peak memory before it
        evaluates, so the figures are those of ``run``)."""
        timing = self.run(n_warmup, n_runs, threads)
        return timing, None if images is None else self.evaluate(images, threads)

    def check(self) -> None:
        """Raise EnvironmentProblem unless the device answers now (a sweep's health check
        before it gives the runner a job). This machine always answers."""

    def cleanup(self) -> None:
        """Remove whatever prepare() created."""

    def describe(self) -> dict[str, Any]:
        return {"runner": self.name}

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def harness_path() -> Path:
    return Path(__file__).with_name("harness.py")
