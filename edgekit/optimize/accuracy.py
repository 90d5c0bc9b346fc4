"""Accuracy-aware quantization (``quantize --data V --max-drop P``), for TFLite and ONNX.

1. Quantize fully; measure top-1 on ``V`` against the float Keras model, both run by the
   local runner (the harness ``edgekit profile`` uses).
2. If the drop exceeds ``P`` percentage points, rank the layers by their own quantization
   error against float (TFLite: QuantizationDebugger; ONNX: onnxruntime's QDQ debugger),
   and keep the worst k in float, k = 1, 2, 4, ... until the limit holds; then bisect for
   the smallest k that holds.
3. Write the model that meets the limit with the fewest float layers, or, if none does, the
   best one found (and exit 1: the limit was not met). The sidecar lists the layers kept in
   float and their latency cost against the fully quantized model, measured side by side.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.artifacts import Artifact, sidecar_path, update_sidecar
from ..core.data import LABELLED
from ..core.errors import BadInput, GateFailed

log = logging.getLogger("edgekit")
Progress = Callable[[int, int], None]


def _sensitivity(fmt: str):
    if fmt == "onnx":
        from .onnx_quant import onnx_sensitivity
        return onnx_sensitivity
    from .quantize import tflite_sensitivity
    return tflite_sensitivity


def _top1(art: Artifact, images: np.ndarray, labels: np.ndarray, prep: dict,
          data: str | None = None) -> float:
    """Top-1 of ``art`` on the images; with ``data`` (the float model), a model whose
    outputs are degenerate there stops the search: no drop measured from it means anything."""
    from ..evaluate.metrics import accuracy, degenerate
    from ..runtime.local import LocalRunner
    from ..runtime.profiling import input_spec

    shape, nchw = input_spec(art, images.shape[1:3])  # the size the images were read at
    with LocalRunner() as runner:
        runner.prepare(art, shape, prep, nchw)
        scores = runner.evaluate(images, None)
    broken = degenerate(scores, labels) if data else []
    if broken:
        raise BadInput(f"{art.path} on {data}: {'; '.join(broken)}; a drop measured from it "
                       "means nothing (is the preprocessing right? is the model trained?)")
    return accuracy(scores, labels)["top1"]


def accuracy_aware(quantizer: Callable[..., Artifact], source: Artifact, out: Path, mode: str, *,
                   data: str, max_drop: float, progress: Progress | None = None,
                   exclude: list[str] | None = None, speed_check: bool = True, threads: int = 1,
                   target: str = "cpu", fmt: str = "tflite", force: bool = False,
                   max_float_layers: int | None = None, **kwargs) -> Artifact:
    from ..runtime.profiling import _load_images, input_spec

    out = Path(out)
    if mode != "int8":
        raise BadInput("--max-drop applies to --mode int8")
    if source.format not in (("keras", "onnx") if fmt == "onnx" else ("keras",)):
        raise BadInput(f"{source.path}: --max-drop needs the float model as the source "
                       f"(Keras{', or ONNX for --format onnx' if fmt == 'onnx' else ''})")
    shape, _ = input_spec(source, kwargs.get("input_size"))
    images, labels, _subset = _load_images(data, None, shape, lambda msg: None)
    if labels is None:
        raise BadInput(f"{data}: --max-drop measures the drop in top-1, so it needs {LABELLED}")
    prep = source.preprocessing
    float_top1 = _top1(source, images, labels, prep, data)
    user = list(exclude or [])
    tries: list[dict] = []
    step = [0]

    def attempt(layers: list[dict]) -> dict:
        nodes = user + [n for r in layers for n in r.get("nodes", [r["name"]])]
        path = out.with_name(f".{out.stem}.try{len(tries)}{out.suffix}")
        art = quantizer(source, path, mode, exclude=nodes, speed_check=False, force=True,
                        target=target, **kwargs)
        top1 = _top1(art, images, labels, prep)
        t = {"art": art, "k": len(layers), "layers": [r["name"] for r in layers],
             "top1": round(top1, 4), "drop": round(float_top1 - top1, 4)}
        tries.append(t)
        step[0] += 1
        if progress:
            progress(step[0], step[0] + 3)
        log.info("%d layer(s) in float: top-1 %.2f%% (drop %.2f pt)", t["k"], top1, t["drop"])
        return t

    try:
        plain = attempt([])
        best = plain
        ranking: list[dict] = []
        if plain["drop"] > max_drop:
            ranking = _sensitivity(fmt)(source, target=target, unsafe=kwargs.get("unsafe", False),
                                        **{k: kwargs[k] for k in ("calib", "calib_size", "opset",
                                                                  "input_size") if k in kwargs})
            # everything in float is the float model (and TensorFlow's debugger refuses to
            # build a model with nothing quantized): stop one layer short of it
            cap = min(len(ranking) - 1, max_float_layers or len(ranking))
            best = _search(attempt, ranking[:cap], max_drop) or min(tries, key=lambda t: (t["drop"], t["k"]))
        return _finish(best, plain, out, float_top1, max_drop, data, ranking, len(tries),
                       force, speed_check and target == "cpu", threads, fmt)
    finally:
        for t in tries:
            for p in (t["art"].path, sidecar_path(t["art"].path)):
                if p.exists():
                    p.unlink()


def _search(attempt, ranking: list[dict], max_drop: float) -> dict | None:
    """The try with the fewest float layers that meets the limit (None if none does)."""
    lo, k, hit = 0, 1, None
    while k <= len(ranking):
        t = attempt(ranking[:k])
        if t["drop"] <= max_drop:
            hit = t
            break
        lo, k = k, (len(ranking) if k < len(ranking) < 2 * k else 2 * k)
    if hit is None:
        return None
    hi = hit["k"]
    while hi - lo > 1:  # smallest k in (lo, hi] that holds
        mid = (lo + hi) // 2
        t = attempt(ranking[:mid])
        if t["drop"] <= max_drop:
            hit, hi = t, mid
        else:
            lo = mid
    return hit


def _finish(best: dict, plain: dict, out: Path, float_top1: float, max_drop: float, data: str,
            ranking: list[dict], n_tries: int, force: bool, speed_check: bool, threads: int,
            fmt: str) -> Artifact:
    from .speed import compare_speed, record_speed

    met = best["drop"] <= max_drop
    record = {"data": data, "max_drop": max_drop, "float_top1": round(float_top1, 4),
              "int8_top1": plain["top1"], "top1": best["top1"], "drop": best["drop"],
              "met": met, "float_layers": best["layers"], "tries": n_tries,
              "ranking": [{k: r[k] for k in ("name", "error", "metric")} for r in ranking[:20]]}
    art = best["art"]
    if best is not plain and speed_check:
        cost = compare_speed(art, plain["art"], threads)
        record["latency_cost"] = {"measured_on": cost["measured_on"], "threads": threads,
                                  "runtime": cost["runtime"], "mixed_ms": cost["candidate_ms"],
                                  "int8_ms": cost["baseline_ms"],
                                  "slowdown": round(cost["candidate_ms"] / cost["baseline_ms"], 3)}
    if Path(out).exists() and not force:
        raise BadInput(f"{out} exists (use --force to overwrite)")
    from ..formats.output import undo_on_failure

    os.replace(art.path, out)
    with undo_on_failure(out):  # the model, its sidecar and its checks: all or nothing
        final = update_sidecar(Artifact(path=Path(out), format=art.format, meta=art.meta),
                               accuracy_aware=record,
                               **({"precision": "mixed"} if best["layers"] else {}))
        if speed_check:
            final = _float_speed(final, fmt, threads, record_speed)
    if not met:
        raise GateFailed(f"top-1 drop {best['drop']:.2f} pt exceeds --max-drop {max_drop} even with "
                         f"{best['k']} layer(s) in float; the best model found is written to {out}")
    return final


def _float_speed(art: Artifact, fmt: str, threads: int, record_speed) -> Artifact:
    """The usual speed check against the float model, for the final model."""
    from ..core.artifacts import open_artifact

    parent = open_artifact(art.meta["parent"]["path"])
    if fmt == "onnx":
        import onnx

        from .onnx_quant import float_source

        size = art.meta.get("input_size")
        proto = float_source(parent, "cpu", art.meta["stage"]["config"].get("opset", 17), False,
                             tuple(size) if size else None)[0]
        return record_speed(art, lambda p: onnx.save(proto, str(p)), threads)
    from ..formats.tflite import convert_tflite

    return record_speed(art, lambda p: p.write_bytes(convert_tflite(parent, "fp32")), threads)
