"""Accuracy-aware quantization (``quantize --data V --max-drop P``), for TFLite and ONNX.

1. Quantize fully; measure top-1 on ``V`` against the float Keras model, both run by the
   local runner (the harness ``edgekit profile`` uses).
2. If the drop exceeds ``P`` percentage points, rank the layers by their own quantization
   error against float (TFLite: QuantizationDebugger; ONNX: onnxruntime's QDQ debugger),
   and keep the worst k in float, k = 1, 2, 4, ... until the limit holds; then bisect for
   the smallest k that holds.
3. If no number of float layers meets it and ``qat_epochs`` is given (TFLite), train the
   float model with quantization-aware training for that many epochs on ``qat_data`` and
   convert it to int8 with its learned ranges: every layer in int8, nothing kept in float.
4. Write the model that meets the limit with the fewest float layers, or, if none does, the
   best one found (and exit 1: the limit was not met). The sidecar says which step met it,
   lists the layers kept in float and their latency cost against the fully quantized model,
   measured side by side. A QAT model that met it is kept beside the output
   (``<out>_qat.keras``): quantizing it again needs no calibration.
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
                   max_float_layers: int | None = None, qat_epochs: int = 0,
                   qat_data: str | None = None, **kwargs) -> Artifact:
    from ..runtime.profiling import _load_images, input_spec

    out = Path(out)
    if mode != "int8":
        raise BadInput("--max-drop applies to --mode int8")
    if source.format not in (("keras", "onnx") if fmt == "onnx" else ("keras",)):
        raise BadInput(f"{source.path}: --max-drop needs the float model as the source "
                       f"(Keras{', or ONNX for --format onnx' if fmt == 'onnx' else ''})")
    qat_model = out.with_name(f"{out.stem}_qat.keras")
    if qat_epochs:
        _check_qat_step(source, fmt, qat_data, user_exclude=exclude, qat_model=qat_model,
                        force=force)
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
             "top1": round(top1, 4), "drop": round(float_top1 - top1, 4),
             "step": "float-fallback" if layers else "ptq"}
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
        if plain["drop"] > max_drop and max_float_layers != 0:
            ranking = _sensitivity(fmt)(source, target=target, unsafe=kwargs.get("unsafe", False),
                                        **{k: kwargs[k] for k in ("calib", "calib_size", "opset",
                                                                  "input_size") if k in kwargs})
            # everything in float is the float model (and TensorFlow's debugger refuses to
            # build a model with nothing quantized): stop one layer short of it
            cap = min(len(ranking) - 1, max_float_layers or len(ranking))
            best = _search(attempt, ranking[:cap], max_drop) or min(tries, key=lambda t: (t["drop"], t["k"]))
        if best["drop"] > max_drop and qat_epochs:
            trained = _qat_try(quantizer, source, qat_model, qat_data, qat_epochs,
                               out.with_name(f".{out.stem}.qat{out.suffix}"), target, kwargs)
            t = {"art": trained, "k": 0, "layers": [], "step": "qat", "epochs": qat_epochs,
                 "top1": round(_top1(trained, images, labels, prep), 4)}
            t["drop"] = round(float_top1 - t["top1"], 4)
            tries.append(t)
            log.info("QAT, %d epoch(s): top-1 %.2f%% (drop %.2f pt)", qat_epochs, t["top1"],
                     t["drop"])
            best = t if t["drop"] <= max_drop or t["drop"] < best["drop"] else best
        if best["step"] != "qat":
            _remove(qat_model)
        return _finish(best, plain, out, float_top1, max_drop, data, ranking, tries,
                       force, speed_check and target == "cpu", threads, fmt, source)
    finally:
        for t in tries:
            _remove(t["art"].path)


def _remove(path: Path) -> None:
    for p in (path, sidecar_path(path)):
        if p.exists():
            p.unlink()


def _check_qat_step(source: Artifact, fmt: str, qat_data: str | None, user_exclude,
                    qat_model: Path, force: bool) -> None:
    if fmt != "tflite" or source.format != "keras":
        raise BadInput("--qat-epochs trains a Keras model for TFLite int8: it needs a Keras "
                       "source and --format tflite")
    if not qat_data:
        raise BadInput("--qat-epochs needs labelled training data: --qat-data TRAIN")
    if user_exclude:
        raise BadInput("--qat-epochs converts every layer to int8: it cannot --keep-float")
    if qat_model.exists() and not force:
        raise BadInput(f"{qat_model} exists (the QAT model is written there; use --force)")


def _qat_try(quantizer, source: Artifact, qat_model: Path, qat_data: str, epochs: int,
             path: Path, target: str, kwargs: dict) -> Artifact:
    """``source`` trained with --qat for ``epochs`` on ``qat_data`` (written to
    ``qat_model``), converted to int8 with its learned ranges at ``path``."""
    from .finetune import finetune

    log.info("the limit is not met with layers in float: quantization-aware training, "
             "%d epoch(s) on %s", epochs, qat_data)
    # distilled from the float model at a low learning rate: on MobileNetV3-Large this made
    # up PTQ's 1.65-point loss in 2 epochs, where 1e-4 without a teacher left 1.4 points
    # (benchmarks/qat.py, README)
    trained = finetune(source, qat_model, qat_data, epochs=epochs, lr=1e-4, qat=True,
                       schedule="plateau",
                       teacher=source.path, force=True, unsafe=kwargs.get("unsafe", False),
                       preprocessing=source.preprocessing,
                       teacher_preprocessing=(source.preprocessing or {}).get("name"))
    options = {k: v for k, v in kwargs.items() if k not in ("calib", "exclude")}
    return quantizer(trained, path, "int8", speed_check=False, force=True, target=target,
                     **options)


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
            ranking: list[dict], tries: list[dict], force: bool, speed_check: bool,
            threads: int, fmt: str, source: Artifact) -> Artifact:
    from .speed import compare_speed, record_speed

    met = best["drop"] <= max_drop
    record = {"data": data, "max_drop": max_drop, "float_top1": round(float_top1, 4),
              "int8_top1": plain["top1"], "top1": best["top1"], "drop": best["drop"],
              "met": met, "met_by": best["step"] if met else None, "step": best["step"],
              "float_layers": best["layers"], "tries": len(tries),
              "steps": [{k: t[k] for k in ("step", "k", "top1", "drop") if k in t}
                        for t in tries],
              "ranking": [{k: r[k] for k in ("name", "error", "metric")} for r in ranking[:20]]}
    if best["step"] == "qat":
        record["qat"] = {"epochs": best["epochs"], "model": str(best["art"].meta["parent"]["path"])}
    art = best["art"]
    if best["layers"] and speed_check:
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
            final = _float_speed(final, source, fmt, threads, record_speed)
    if not met:
        how = ("after quantization-aware training" if best["step"] == "qat" else
               f"even with {best['k']} layer(s) in float")
        raise GateFailed(f"top-1 drop {best['drop']:.2f} pt exceeds --max-drop {max_drop} {how}; "
                         f"the best model found is written to {out}")
    return final


def _float_speed(art: Artifact, parent: Artifact, fmt: str, threads: int,
                 record_speed) -> Artifact:
    """The usual speed check against the float model (``parent``), for the final model."""
    if fmt == "onnx":
        import onnx

        from .onnx_quant import float_source

        size = art.meta.get("input_size")
        proto = float_source(parent, "cpu", art.meta["stage"]["config"].get("opset", 17), False,
                             tuple(size) if size else None)[0]
        return record_speed(art, lambda p: onnx.save(proto, str(p)), threads)
    from ..formats.tflite import convert_tflite

    return record_speed(art, lambda p: p.write_bytes(convert_tflite(parent, "fp32")), threads)
