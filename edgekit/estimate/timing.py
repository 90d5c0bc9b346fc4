"""Build, convert and time zoo specs on a Runner: the measuring half of ``calibrate``,
``scale --measure`` and the latency-predictor benchmark.

A spec is built in memory (random weights: latency does not depend on weight values), converted
with edgekit's own TFLite path, written to a temporary file and timed by any Runner (local
today, SSH/adb/emulator later), batch 1. int8 conversion calibrates on a few synthetic samples:
the activation ranges it picks do not change the kernels XNNPACK runs, only their constants.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.artifacts import Artifact
from ..models.spec import ArchSpec
from ..runtime.base import Runner

SYNTHETIC_CALIB = 4  # int8 calibration samples (latency does not depend on their values)
TARGET_TIMING_S = 0.6  # aim for this much timed work per measurement


def convert_spec(spec: ArchSpec, precision: str, out: Path, seed: int = 0) -> Path:
    """Build ``spec`` and write it as a .tflite in ``precision`` (fp32 | fp16 | dynamic | int8)."""
    from ..formats.tflite import convert_tflite
    from ..models.build import build_model

    model = build_model(spec, seed=seed)
    representative = None
    if precision == "int8":
        rng = np.random.default_rng(seed)
        shape = (1, *spec.input_shape)
        samples = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(SYNTHETIC_CALIB)]
        representative = lambda: ([x] for x in samples)  # noqa: E731
    source = Artifact(path=out.with_suffix(".keras"), format="keras", meta={})
    data = convert_tflite(source, precision, representative, io_type="int8", model=model)
    out.write_bytes(data)
    return out


def time_tflite(path: Path, runner: Runner, input_shape: list[int], threads: int,
                runs: int | None = None, warmup: int = 3) -> dict[str, Any]:
    """Median batch-1 latency of a .tflite on ``runner`` (see ``time_artifact``)."""
    artifact = Artifact(path=path, format="tflite", meta={})
    return time_artifact(artifact, runner, [1, *input_shape], threads, runs=runs, warmup=warmup)


def time_artifact(artifact: Artifact, runner: Runner, input_shape: list[int], threads: int | None,
                  nchw: bool = False, runs: int | None = None, warmup: int = 3) -> dict[str, Any]:
    """Median batch-1 latency of a model on ``runner``. Without ``runs``, a first short
    timing sizes the run so that about TARGET_TIMING_S of inference is measured."""
    prep = {"mean": [127.5] * 3, "std": [127.5] * 3}
    runner.prepare(artifact, input_shape, prep, nchw)
    try:
        if runs is None:
            probe = runner.run(warmup, 5, threads)["latency_ms"]
            warmup = 0
            runs = int(min(300, max(15, TARGET_TIMING_S * 1000 / max(min(probe), 1e-3))))
        result = runner.run(warmup, runs, threads)
        times = result["latency_ms"]
    finally:
        runner.cleanup()
    return {"median_ms": statistics.median(times), "runs": len(times),
            "cpu": result.get("cpu", ""), "runtime": result.get("runtime", ""),
            "runtime_version": result.get("runtime_version", ""),
            "llc_bytes": result.get("llc_bytes"),
            "spread_pct": 100 * (np.percentile(times, 75) - np.percentile(times, 25))
            / statistics.median(times)}


def _convert_job(args: tuple[ArchSpec, str, str]) -> str:
    from ..models.load import quiet_tensorflow
    quiet_tensorflow()
    spec, precision, path = args
    return str(convert_spec(spec, precision, Path(path)))


def convert_many(specs: list[ArchSpec], precision: str, folder: Path, jobs: int = 1,
                 progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Convert every spec into ``folder``; ``jobs`` > 1 converts in parallel processes
    (conversion only: timing always runs alone, afterwards)."""
    work = [(s, precision, str(folder / f"m{i:03d}_{precision}.tflite"))
            for i, s in enumerate(specs)]
    if jobs <= 1:
        out = []
        for i, w in enumerate(work):
            out.append(Path(_convert_job(w)))
            if progress:
                progress(i + 1, len(work))
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        out = []
        for i, p in enumerate(pool.map(_convert_job, work)):
            out.append(Path(p))
            if progress:
                progress(i + 1, len(work))
        return out


def measure_specs(specs: list[ArchSpec], precision: str, runner: Runner, threads: int,
                  progress: Callable[[int, int], None] | None = None,
                  jobs: int = 1, rounds: int = 2) -> list[dict[str, Any]]:
    """Convert every spec (``jobs`` in parallel), then time each alone on ``runner``, in
    ``rounds`` passes over all models; a model's latency is the lowest of its per-round
    medians, so a transient disturbance (another process, a frequency dip) in one pass does
    not stick to a model. Progress counts conversions and timings together."""
    total = (1 + rounds) * len(specs)
    conv_cb = (lambda done, _n: progress(done, total)) if progress else None
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgekit-lat-") as tmp:
        paths = convert_many(specs, precision, Path(tmp), jobs, conv_cb)
        done = len(specs)
        for r in range(rounds):
            for i, (spec, path) in enumerate(zip(specs, paths)):
                t = time_tflite(path, runner, list(spec.input_shape), threads)
                if r == 0:
                    out.append({"spec": spec, "precision": precision, "threads": threads,
                                "size_bytes": path.stat().st_size, **t,
                                "round_medians_ms": [t["median_ms"]]})
                else:
                    out[i]["round_medians_ms"].append(t["median_ms"])
                    if t["median_ms"] < out[i]["median_ms"]:
                        out[i].update(t, round_medians_ms=out[i]["round_medians_ms"])
                done += 1
                if progress:
                    progress(done, total)
    return out
