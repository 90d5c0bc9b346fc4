"""Classify image files with any model edgekit reads (.keras, .tflite, .onnx).

The images go through the preprocessing the sidecar records (mean/std and, for ImageNet
models, the centre crop) and the model runs in the same harness that ``profile`` uses, so a
.tflite int8 model gets its quantized input exactly as it would on a device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.artifacts import Artifact
from ..core.errors import BadInput

SCHEMA = "edgekit.predict/1"


def predict(art: Artifact, images: list[Path], *, top: int = 5,
            preprocessing: str | None = None, threads: int | None = None,
            input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Top-``top`` classes with scores for each image (an ``edgekit.predict/1`` document).
    A model whose output is not one vector of class scores per image gets no classes: the
    document gives its output's shape and statistics per image instead."""
    from ..core.data import read_photos
    from ..runtime.local import LocalRunner
    from ..core.preprocessing import resolve
    from ..runtime.profiling import input_spec, output_kind

    if not images:
        raise BadInput("give at least one image file")
    if top < 1:
        raise BadInput(f"--top must be at least 1 (got {top})")
    if threads is not None and threads < 1:
        raise BadInput(f"--threads must be at least 1 (got {threads})")
    shape, nchw = input_spec(art, input_size)
    prep = resolve(art, preprocessing, needed_for="predict")
    crop = prep.get("crop")
    for path in images:
        if not Path(path).is_file():
            raise BadInput(f"{path}: no such image file")
    pixels = read_photos(images, shape[1], shape[2], shape[3], crop)
    with LocalRunner() as runner:
        runner.prepare(art, shape, prep, nchw)
        scores = runner.evaluate(pixels, threads)
        n_outputs = runner.last_result.get("n_model_outputs", 1)
    doc = {"schema": SCHEMA, "model": {"path": str(art.path), "format": art.format,
                                       "sha256": art.sha256, "input_shape": shape},
           "preprocessing": prep}
    kind = output_kind(scores, n_outputs)
    if not kind["class_scores"]:
        return {**doc, "outputs": kind, "softmax_applied": False, "predictions": None,
                "tensors": [{"image": str(path), "shape": kind["shape"],
                             **{k: float(getattr(np, k)(y)) for k in ("min", "max", "mean", "std")}}
                            for path, y in zip(images, scores)]}
    probs, applied = as_probabilities(scores)
    labels = art.labels
    if labels is not None and len(labels) != probs.shape[1]:
        labels = None  # a sidecar from another head: indices only
    k = min(top, probs.shape[1])
    results = []
    for path, p in zip(images, probs):
        order = np.argsort(-p, kind="stable")[:k]
        results.append({"image": str(path), "top": [
            {"class": int(i), "label": labels[i] if labels else None, "score": float(p[i])}
            for i in order]})
    return {**doc, "outputs": kind, "softmax_applied": applied, "predictions": results}


def as_probabilities(scores: np.ndarray) -> tuple[np.ndarray, bool]:
    """Scores as probabilities: unchanged when every score lies in [0, 1] (a softmax output;
    an int8 one loses the mass of the classes it rounds to zero, so its rows need not sum to
    1), else a softmax of them (a model that ends in logits). Returns (scores, softmax applied)."""
    s = np.asarray(scores, np.float64).reshape(len(scores), -1)
    if np.all(s >= -1e-6) and np.all(s <= 1 + 1e-6):
        return s, False
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True), True
