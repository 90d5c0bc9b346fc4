"""``edgekit profile``: latency, memory, accuracy and fidelity of one artifact on a runner."""

from __future__ import annotations

import datetime as dt
import logging
import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.artifacts import Artifact, tool_versions
from ..core import preprocessing as preprocess
from ..core.errors import BadInput, first_line
from ..core.results import PROFILE_SCHEMA
from ..evaluate.metrics import accuracy, degenerate, fidelity, latency_stats
from .base import Runner

log = logging.getLogger("edgekit")
Status = Callable[[str], None]


def input_spec(artifact: Artifact, input_size: tuple[int, int] | None = None
               ) -> tuple[list[int], bool]:
    """(NHWC input shape with batch 1, whether the model takes NCHW). A dynamic height and
    width come from ``input_size``, else the size the sidecar recorded, else BadInput."""
    from ..core.shapes import concrete

    shape = (artifact.meta.get("input") or {}).get("shape")
    if not shape:
        if artifact.format == "tflite":
            from ..formats.tflite import tflite_io
            shape = tflite_io(artifact.path)["input"]["shape_signature"]
        elif artifact.format == "onnx":
            import onnxruntime as ort
            try:
                sess = ort.InferenceSession(str(artifact.path), providers=["CPUExecutionProvider"])
            except Exception as exc:
                raise BadInput(f"{artifact.path}: onnxruntime cannot load it "
                               f"({first_line(exc, 160)})") from None
            shape = list(sess.get_inputs()[0].shape)
        elif artifact.format == "keras":
            from ..models.load import read_keras
            shape = list(read_keras(artifact.path).inputs[0].shape)
        else:
            raise BadInput(f"{artifact.path}: profiling a {artifact.format} is not supported; "
                           "export it to .tflite or .onnx first")
    recorded = artifact.meta.get("input_size")
    size = input_size or (tuple(recorded) if recorded else None)
    shape = concrete(shape, size, str(artifact.path))
    nchw = False
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        nchw, shape = True, [shape[0], shape[2], shape[3], shape[1]]
    return shape, nchw


def profile(artifact: Artifact, runner: Runner, *, data: str | None = None,
            reference: Artifact | None = None, threads: int | None = None, warmup: int = 10,
            runs: int = 100, limit: int | None = None, preprocessing: str | None = None,
            reference_preprocessing: str | None = None, input_size: tuple[int, int] | None = None,
            status: Status = lambda msg: None, device: str | None = None) -> dict[str, Any]:
    """Measure ``artifact`` on ``runner``; returns an ``edgekit.profile/1`` document."""
    if runs < 1 or warmup < 0:
        raise BadInput(f"--runs must be >= 1 and --warmup >= 0 (got {runs}, {warmup})")
    if threads is not None and threads < 1:
        raise BadInput(f"--threads must be >= 1 (got {threads})")
    from ..core.registry import RUNNERS

    formats = RUNNERS.get_entry(runner.name).caps.get("formats", [])
    if artifact.format not in formats:
        raise BadInput(f"the {runner.name} runner runs {', '.join(formats)} models, not "
                       f"{artifact.format}")
    if getattr(runner, "providers", None) and artifact.format != "onnx":
        raise BadInput(f"--provider picks an onnxruntime execution provider: it applies to "
                       f".onnx models, not {artifact.format}")
    shape, nchw = input_spec(artifact, input_size)
    if reference is not None and not data:
        raise BadInput("--reference needs --data: fidelity is measured on real inputs")
    prep = preprocess.resolve(artifact, preprocessing,
                              needed_for="measuring on --data" if data else None)
    if reference is not None:
        # a dynamic reference takes the profiled model's size
        ref_shape, ref_nchw = input_spec(reference, input_size or (shape[1], shape[2]))
        if ref_shape != shape:
            raise BadInput(f"reference input {ref_shape[1:]} differs from the model's {shape[1:]}")
        ref_prep = _reference_preprocessing(artifact, prep, reference, reference_preprocessing)
    images, labels, subset = (_load_images(data, limit, shape, status, prep.get("crop")) if data
                              else (None,) * 3)
    with runner:
        runner.prepare(artifact, shape, preprocess.for_timing(prep), nchw)
        status(f"timing {runs} runs after {warmup} warm-up on {runner.name}"
               + (f", then evaluating {len(images)} images" if images is not None else ""))
        timing, scores = runner.measure(warmup, runs, threads, images)
    result = _document(artifact, runner, timing, threads, warmup, runs, shape, prep, device)
    if artifact.format == "onnx" and runner.name == "local":
        result.update(_u8s8_overflow(artifact, timing))
    classes = False
    if scores is not None:
        result["outputs"] = outputs = output_kind(scores, timing.get("n_model_outputs", 1))
        classes = outputs["class_scores"]
        if classes:
            scores = scores.reshape(len(scores), -1)
            # per-image top-1, so `compare` can count agreement across runs
            result["predictions"] = {"dataset": data, "subset": subset,
                                     "top1": [int(i) for i in np.argmax(scores, axis=1)]}
        else:
            log.warning("%s: %s; accuracy and top-1 agreement are not measured",
                        artifact.path, outputs["why"])
    if classes and labels is not None:
        if scores.shape[1] <= int(labels.max()):
            raise BadInput(f"{data}: labels go up to {int(labels.max())} but the model has "
                           f"{scores.shape[1]} outputs")
        result["accuracy"] = {**accuracy(scores, labels), "dataset": data, "subset": subset,
                              "degenerate": degenerate(scores, labels)}
    elif data and labels is None:
        log.info("%s has no labels: accuracy not measured", data)
    if reference is not None:
        status(f"running the reference {reference.path.name}")
        with runner:  # the same runner again: same device, same options
            runner.prepare(reference, shape, ref_prep, ref_nchw)
            ref_scores = runner.evaluate(images, threads)
        if ref_scores.shape[1:] != scores.shape[1:] and ref_scores.size == scores.size:
            ref_scores = ref_scores.reshape(scores.shape)
        if ref_scores.shape != scores.shape:
            raise BadInput(f"the reference's output {list(ref_scores.shape[1:])} differs from "
                           f"the model's {list(scores.shape[1:])}")
        result["fidelity"] = {**fidelity(scores, ref_scores, labels, classes=classes),
                              "reference": str(reference.path),
                              "reference_sha256": reference.sha256,
                              "reference_preprocessing": ref_prep}
        if classes and labels is not None:
            result["reference_accuracy"] = {**accuracy(ref_scores, labels), "dataset": data}
    return result


def _u8s8_overflow(artifact: Artifact, timing: dict) -> dict[str, Any]:
    """Where onnxruntime's CPU provider on this x86 CPU without VNNI may saturate the file's
    full-range int8 weights: a warning and ``int8_overflow_risk`` (the accuracy measured here
    is then the saturated one; a VNNI or Arm CPU would compute what the graph says)."""
    from .harness import x86_without_vnni

    providers = timing.get("execution_providers") or ["CPUExecutionProvider"]
    if providers[0] != "CPUExecutionProvider" or not x86_without_vnni():
        return {}
    import onnx

    from ..formats.onnx import full_range_weights

    path = Path(artifact.path)
    try:  # advice only: a file it cannot read is not a reason to stop the profile
        layers = full_range_weights(onnx.load(str(path), load_external_data=False),
                                    str(path.parent))
    except Exception as exc:  # noqa: BLE001
        log.debug("int8 weight range not checked: %s", exc)
        return {}
    if not layers:
        return {}
    log.warning("%s: %d layer(s) read int8 weights beyond +-64 (7 bits), which onnxruntime's CPU "
                "kernels can saturate on this x86 CPU without VNNI: its outputs (and any "
                "accuracy) measured here may be worse than on other CPUs. Remedies: 7-bit weights "
                "(edgekit quantize --format onnx --target cpu writes them; onnxruntime's "
                "reduce_range), or the session option session.x64quantprecision=1 in the program "
                "that runs the file.", path.name, len(layers))
    return {"int8_overflow_risk": {"layers": len(layers), "first": layers[0],
                                   "cpu": timing["cpu"], "remedy": "7-bit weights, or "
                                   "session.x64quantprecision=1"}}


def output_kind(scores: np.ndarray, n_outputs: int = 1) -> dict[str, Any]:
    """Whether a model's outputs are class scores: one output, one vector per image (singleton
    axes aside). A detector's boxes ([N, 896, 16]) or a segmentation map are not: their
    argmax is no class, so no top-1 is computed from them."""
    per_image = [int(d) for d in scores.shape[1:]]
    wide = [d for d in per_image if d != 1]
    if n_outputs != 1:
        why = f"the model has {n_outputs} outputs, not one vector of class scores"
    elif len(wide) > 1:
        why = f"its output is {per_image} per image, not one vector of class scores"
    elif not wide or wide[0] < 2:
        why = f"its output is {per_image} per image: fewer than 2 classes"
    else:
        return {"class_scores": True, "shape": per_image, "count": n_outputs}
    return {"class_scores": False, "shape": per_image, "count": n_outputs, "why": why}


def _reference_preprocessing(artifact: Artifact, prep: dict, reference: Artifact,
                             flag: str | None) -> dict:
    """The reference's own preprocessing (flag, sidecar, graph); when none is known and the
    profiled model was made from this very reference, the one the profiled model records."""
    made_from_it = (artifact.meta.get("parent") or {}).get("sha256") == reference.sha256
    fallback = ({**prep, "decided_by": f"the profiled model's sidecar ({prep.get('decided_by')};"
                                       " it was made from this reference)"}
                if made_from_it and artifact.preprocessing else None)
    return preprocess.resolve(reference, flag, needed_for="--reference", fallback=fallback,
                              flag_name="--reference-preprocessing")


def _load_images(data: str, limit: int | None, shape: list[int], status: Status,
                 crop: float | None = None):
    """uint8 images sized to the model input, their labels, and which subset was taken."""
    from ..core.data import draw, load_dataset, read_images

    dataset = load_dataset(data)
    if len(dataset) == 0:
        raise BadInput(f"{data}: the dataset is empty")
    if limit is not None and limit < 1:
        raise BadInput(f"--limit must be at least 1 (got {limit})")
    idx, subset = draw(dataset, limit)
    status(f"reading {len(idx)} images from {data}")
    images = read_images(dataset, idx, shape[1], shape[2], shape[3], crop=crop)
    return images, None if dataset.labels is None else dataset.labels[idx], subset


def _memory(timing: dict) -> dict[str, Any]:
    """Memory figures of one harness run, each saying what it includes."""
    out = {"peak_rss_mb": timing["peak_rss_timing_mb"],
           "model_rss_mb": timing["rss_loaded_mb"] - timing["rss_start_mb"]}
    if timing.get("memory_note"):  # a runner with its own measure (benchmark_model, ssh)
        return {**out, "note": timing["memory_note"]}
    out["baseline_rss_mb"] = timing["rss_start_mb"]
    if timing.get("peak_reset"):
        out["model_peak_mb"] = timing["peak_rss_timing_mb"] - timing["rss_start_mb"]
        out["note"] = ("a fresh harness process per measurement: baseline_rss_mb is Python, "
                       "numpy and the runtime before the model; model_rss_mb what loading the "
                       "model added; model_peak_mb the most the model added while it loaded "
                       "and ran (peak reset after the runtime was imported); peak_rss_mb the "
                       "whole process's peak (VmHWM)")
    else:
        out["note"] = ("peak_rss_mb is the harness process's peak, including Python, numpy and "
                       "the runtime (this system cannot reset the peak, so the model's own "
                       "peak is not separated); model_rss_mb is what loading the model added")
    return out


def _document(artifact: Artifact, runner: Runner, timing: dict, threads: int | None,
              warmup: int, runs: int, shape: list[int], prep: dict,
              device: str | None = None) -> dict[str, Any]:
    return {
        "schema": PROFILE_SCHEMA,
        "model": {"path": str(artifact.path), "sha256": artifact.sha256,
                  "format": artifact.format, "precision": artifact.precision,
                  "size_bytes": artifact.meta.get("size_bytes") or Path(artifact.path).stat().st_size,
                  "input_shape": shape, "preprocessing": prep},
        "device": {"name": device or ("host" if runner.name == "local" else runner.name),
                   "cpu": timing["cpu"], "cores": timing["cores"], "machine": timing["machine"],
                   "system": timing["system"]},
        "settings": {**runner.describe(), "threads": timing["threads"],
                     "warmup": warmup, "runs": runs, "batch": 1},
        "latency_ms": (timing.get("latency_summary")  # a tool that prints statistics only
                       or latency_stats(timing["latency_ms"])) | (
            {} if runner.latency_meaningful else
            {"meaningful": False, "note": runner.latency_note}),
        "init_ms": timing["init_ms"],
        "memory": _memory(timing),
        "accuracy": None, "fidelity": None,
        "provenance": {"measured": f"{runner.name} runner on {timing['cpu']}",
                       "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                       "runtime": timing["runtime"], "runtime_version": timing["runtime_version"],
                       **({"execution_providers": timing["execution_providers"]}
                          if timing.get("execution_providers") else {}),
                       "python": timing["python"], "numpy": timing["numpy"],
                       "host_python": platform.python_version(), "tools": tool_versions()},
    }
