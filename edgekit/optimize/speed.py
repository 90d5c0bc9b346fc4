"""Is the quantized model really faster? Time it against its float parent on this machine.

Users' top complaint about int8 is a model *slower* than float (the wrong scheme for the
runtime). So every CPU quantization ends with a measurement: both models are timed
through the local runner (the same harness ``edgekit profile`` uses), alternating, and each
latency is the lower of its per-round medians, so drift on the machine hits both alike.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from ..core.artifacts import Artifact

log = logging.getLogger("edgekit")
# Without int8 dot-product instructions (x86 AVX2: runtime.harness.x86_without_vnni)
# XNNPACK's int8 kernels gain little over float, or lose: measured on an AMD EPYC (AVX2),
# keras.applications MobileNetV3Small and MobileNetV2 int8 .tflite files took 1.20-1.23x and
# 1.49-1.54x fp32's time, against 0.47-0.69x for MobileNetV3Small on a Xeon with AVX-512 VNNI
# (benchmarks/int8_ops.py, 64 and 96 px, 1 thread). onnxruntime's int8 still won there (1.48x
# faster than fp32, benchmarks/int8_speed.py), so the warning's note is for LiteRT only.
LITERT_RUNTIMES = ("ai_edge_litert", "tflite_runtime", "tensorflow.lite")  # harness names


def compare_speed(candidate: Artifact, baseline: Artifact, threads: int = 1,
                  rounds: int = 2) -> dict:
    """Batch-1 median latency of ``candidate`` and ``baseline`` on this machine's runtime."""
    from ..estimate.timing import time_artifact
    from ..runtime.harness import x86_without_vnni
    from ..runtime.local import LocalRunner
    from ..runtime.profiling import input_spec

    shape, nchw = input_spec(candidate)
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for key, art in (("baseline", baseline), ("candidate", candidate)):
            t = time_artifact(art, LocalRunner(), shape, threads, nchw=nchw)
            if key not in best or t["median_ms"] < best[key]["median_ms"]:
                best[key] = t
    cand, base = best["candidate"]["median_ms"], best["baseline"]["median_ms"]
    return {"measured_on": best["candidate"]["cpu"] or "this machine",
            "runtime": f"{best['candidate']['runtime']} {best['candidate']['runtime_version']}",
            "threads": threads, "rounds": rounds, "baseline": baseline.meta.get("precision", "fp32"),
            "candidate_ms": round(cand, 4), "baseline_ms": round(base, 4),
            "speedup": round(base / cand, 3), "faster": cand < base,
            "x86_without_vnni": x86_without_vnni()}


def warn_if_slower(check: dict, what: str, hint: str = "") -> None:
    if not check["faster"]:
        log.warning("%s is NOT faster than %s here: %.2f ms vs %.2f ms (%d thread(s), %s, "
                    "measured on %s). Check the target and engine%s.", what, check["baseline"],
                    check["candidate_ms"], check["baseline_ms"], check["threads"],
                    check["runtime"], check["measured_on"], hint)
        if check.get("x86_without_vnni") and check["runtime"].startswith(LITERT_RUNTIMES):
            log.warning("This CPU has no int8 dot-product instructions (x86 VNNI), without which "
                        "XNNPACK's int8 kernels gain little over float; the device you deploy to "
                        "may differ: time the model there (edgekit profile MODEL --host ...).")


def record_speed(art: Artifact, write_float: Callable[[Path], None], threads: int = 1) -> Artifact:
    """Time ``art`` against the float model that ``write_float(path)`` writes; record the
    result in ``art``'s sidecar and warn when the quantized model is not faster."""
    import tempfile

    from ..core.artifacts import update_sidecar

    with tempfile.TemporaryDirectory(prefix="edgekit-fp-") as tmp:
        fpath = Path(tmp) / f"float{art.path.suffix}"
        write_float(fpath)
        twin = Artifact(path=fpath, format=art.format, meta={"precision": "fp32"})
        check = compare_speed(art, twin, threads)
    hint = (f"; edgekit inspect {art.path} --check xnnpack lists the ops XNNPACK does not run "
            "in int8" if art.format == "tflite" and art.meta.get("precision") == "int8" else "")
    warn_if_slower(check, f"{art.path.name} ({art.meta.get('precision')})", hint)
    return update_sidecar(art, speed_check=check)
