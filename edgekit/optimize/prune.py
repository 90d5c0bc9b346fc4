"""Unstructured magnitude pruning, native in Keras 3 (tensorflow-model-optimization rejects
Keras 3 models).

The weights of Conv2D and Dense kernels with the smallest magnitudes are set to zero, per
layer or over all layers at once (``scope``), following a polynomial schedule (Zhu & Gupta
2017, "To prune, or not to prune"): s(t) = s_f * (1 - (1 - t / t_end)^3), updated every
``frequency`` steps and set to exactly s_f at ``t_end``, which is two thirds of the training
steps, so the last third trains at the target. Each mask lives in a non-trainable variable
and is applied as the kernel's constraint, which Keras runs after every optimizer step: pruned
weights stay zero through training. At the end the constraints are removed ("stripped"): the
saved model is a plain Keras model whose kernels hold exact zeros. Depthwise kernels are left
dense: they hold ~2-4% of a MobileNet's weights and are the most sensitive to pruning.
"""

from __future__ import annotations

import fnmatch
import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..core.artifacts import Artifact, check_output
from ..core.errors import BadInput
from ..models.load import import_keras, load_keras
from .train import (DEFAULT_MAX_DROP, View, check_classes, check_fit_args, check_not_worse,
                    classifier_parts, fit, load_train_data, output_classes, parse_augment,
                    input_batches, top1)

SCOPES = ("layer", "global")


@dataclass(frozen=True)
class PolynomialSchedule:
    """Sparsity at each training step: 0 at step 0, ``target`` from ``end`` on."""

    target: float
    end: int  # the step at which the target is reached (0: one shot, before training)
    frequency: int
    power: int = 3

    def at(self, step: int) -> float | None:
        """The sparsity to apply before ``step``, or None when masks are not updated then."""
        if step >= self.end:
            return self.target if step == self.end else None
        if step % self.frequency:
            return None
        return self.target * (1.0 - (1.0 - step / self.end) ** self.power)

    @classmethod
    def for_training(cls, target: float, total_steps: int, updates: int = 16) -> "PolynomialSchedule":
        end = int(total_steps * 2 // 3)
        return cls(target, end, max(1, math.ceil(end / updates)) if end else 1)


def prunable(model, exclude: Sequence[str] = ()) -> list[Any]:
    """Conv2D (not grouped) and Dense layers, minus those matching an ``exclude`` pattern."""
    keras = import_keras()
    layers = [layer for layer in model.layers
              if (isinstance(layer, keras.layers.Dense) or (
                  isinstance(layer, keras.layers.Conv2D)
                  and not isinstance(layer, keras.layers.DepthwiseConv2D)
                  and layer.groups == 1))
              and not any(fnmatch.fnmatchcase(layer.name, p) for p in exclude)]
    for pattern in exclude:
        if not any(fnmatch.fnmatchcase(layer.name, pattern) for layer in model.layers):
            raise BadInput(f"--exclude '{pattern}' matches no layer of the model")
    if not layers:
        raise BadInput("the model has no Conv2D or Dense layer left to prune")
    return layers


def magnitude_masks(kernels: Sequence[np.ndarray], sparsity: float, scope: str) -> list[np.ndarray]:
    """Boolean keep-masks zeroing exactly ``round(sparsity * n)`` smallest-magnitude weights,
    counted per kernel (scope "layer") or over all kernels together ("global")."""
    if scope == "layer":
        return [_mask(np.abs(k).ravel(), sparsity).reshape(k.shape) for k in kernels]
    flat = np.concatenate([np.abs(k).ravel() for k in kernels])
    keep = _mask(flat, sparsity)
    cuts = np.cumsum([k.size for k in kernels])[:-1]
    return [m.reshape(k.shape) for m, k in zip(np.split(keep, cuts), kernels)]


def _mask(magnitudes: np.ndarray, sparsity: float) -> np.ndarray:
    k = int(round(sparsity * magnitudes.size))
    keep = np.ones(magnitudes.size, dtype=bool)
    if k > 0:
        keep[np.argpartition(magnitudes, k - 1, kind="introselect")[:k]] = False
    return keep


def _pruning_callback(layers, schedule: PolynomialSchedule, scope: str, log: list):
    """A Keras callback applying ``schedule``: new masks from the current weights at each
    update step, kept by a kernel constraint in between."""
    keras = import_keras()

    class MaskConstraint(keras.constraints.Constraint):
        def __init__(self, mask):
            self.mask = mask

        def __call__(self, w):
            return w * self.mask

    class Pruning(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = 0
            self.masks = [keras.Variable(np.ones(layer.kernel.shape, "float32"),
                                         trainable=False, name=f"{layer.name}_mask")
                          for layer in layers]
            for layer, mask in zip(layers, self.masks):
                layer.kernel.constraint = MaskConstraint(mask)

        def apply(self, sparsity: float) -> None:
            keeps = magnitude_masks([layer.kernel.numpy() for layer in layers], sparsity, scope)
            for layer, var, keep in zip(layers, self.masks, keeps):
                var.assign(keep.astype("float32"))
                layer.kernel.assign(layer.kernel.numpy() * keep)
            log.append({"step": self.step, "sparsity": round(sparsity, 4)})

        def on_train_batch_begin(self, batch, logs=None):
            s = schedule.at(self.step)
            if s is not None:
                self.apply(s)

        def on_train_batch_end(self, batch, logs=None):
            self.step += 1

        def strip(self) -> None:
            for layer in layers:
                layer.kernel.constraint = None

    return Pruning()


def sparsity_report(model, layers) -> dict:
    """Measured zeros per pruned layer and over the model."""
    rows = []
    for layer in layers:
        k = layer.kernel.numpy()
        rows.append({"layer": layer.name, "weights": int(k.size), "zeros": int(np.sum(k == 0)),
                     "sparsity": round(float(np.mean(k == 0)), 4)})
    total = sum(int(np.prod(w.shape)) for w in model.weights)
    zeros = sum(int(np.sum(w.numpy() == 0)) for w in model.weights)
    pruned_w = sum(r["weights"] for r in rows)
    return {"layers": rows,
            "pruned_layers_sparsity": round(sum(r["zeros"] for r in rows) / pruned_w, 4),
            "model_sparsity": round(zeros / total, 4), "model_weights": total}


def tflite_gzip_size(model, path: Path) -> dict:
    """Sizes of ``model`` converted to a float TFLite file, raw and gzip-compressed (level 9),
    the way a pruned model ships smaller: sparse weights compress, they do not shrink."""
    from ..formats.tflite import convert_tflite

    data = convert_tflite(Artifact(path, "keras"), "fp32", model=model)
    return {"tflite_bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9, mtime=0))}


def prune_unstructured(source: Artifact, out: Path, data: str, *, sparsity: float,
                       scope: str = "layer", epochs: int = 2, batch_size: int = 64,
                       lr: float = 1e-4, exclude: Sequence[str] = (), augment=None,
                       val_data: str | None = None, limit: int | None = None, seed: int = 0,
                       preprocessing: dict | None = None, force: bool = False,
                       unsafe: bool = False, on_batch: Callable | None = None,
                       on_epoch: Callable | None = None,
                       max_drop: float = DEFAULT_MAX_DROP, allow_worse: bool = False,
                       on_status: Callable[[str], None] = lambda m: None) -> Artifact:
    """Prune ``source`` to ``sparsity`` while fine-tuning ``epochs`` on ``data``; write
    ``out`` (.keras) with the measured per-layer sparsity, validation accuracy before and
    after, and the gzip size of the float TFLite export of both models."""
    from ..models.zoo import save_child
    from .finetune import source_spec

    check_output(out, force)
    if not 0 < sparsity < 1:
        raise BadInput(f"--sparsity must be between 0 and 1 (got {sparsity})")
    if scope not in SCOPES:
        raise BadInput(f"unknown --scope '{scope}' (known: {', '.join(SCOPES)})")
    augment = parse_augment(augment)
    check_fit_args(epochs, batch_size, lr)
    import_keras().utils.set_random_seed(seed)  # before loading: see finetune
    model = load_keras(source.path, unsafe=unsafe)
    probs, logits = classifier_parts(model)
    layers = prunable(probs, exclude)
    view = View.of(model, preprocessing or source.preprocessing)
    on_status("reading the data")
    train_data = load_train_data(data, view.size, val_data=val_data, limit=limit, seed=seed)
    check_classes(train_data, output_classes(probs))
    on_status("measuring the dense model")
    before = top1(probs, train_data.val, view)
    dense_size = tflite_gzip_size(probs, source.path)
    per_epoch = math.ceil(len(train_data.train) / batch_size)
    steps = epochs * per_epoch
    schedule = PolynomialSchedule.for_training(sparsity, steps)
    log: list[dict] = []
    pruning = _pruning_callback(layers, schedule, scope, log)
    if steps == 0:
        pruning.apply(sparsity)  # one shot, no training
    on_status("pruning")
    # best weights and early stopping only from the epoch in which the target is reached
    result = fit(probs, logits, train_data, view, epochs=epochs, batch_size=batch_size, lr=lr,
                 augment=augment, best_from_epoch=schedule.end // per_epoch, seed=seed,
                 callbacks=[pruning], on_batch=on_batch, on_epoch=on_epoch)
    pruning.strip()
    report = sparsity_report(probs, layers)
    on_status("measuring the pruned model")
    after = top1(probs, train_data.val, view)
    versus_start = check_not_worse("prune", before, after, train_data.val, max_drop,
                                   allow_worse)
    sizes = tflite_gzip_size(probs, source.path)
    config = {"method": "magnitude", "sparsity": sparsity, "scope": scope, "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "exclude": list(exclude), "augment": augment,
              "data": data, "val_data": train_data.val_source, "limit": limit, "seed": seed,
              "schedule": {"kind": "polynomial", "power": schedule.power, "end_step": schedule.end,
                           "frequency": schedule.frequency, "total_steps": steps}}
    facts = {"pruning": {**report, "schedule_log": log,
                         "val_accuracy": {"before": round(before, 2), "after": round(after, 2),
                                          "drop": round(before - after, 2),
                                          "images": len(train_data.val)},
                         "tflite_fp32": {"dense": dense_size, "pruned": sizes,
                                         "gzip_ratio": round(sizes["gzip_bytes"]
                                                             / dense_size["gzip_bytes"], 3)}},
             "finetune": result.summary(), "versus_start": versus_start}
    return save_child(probs, source, out, "prune", config,
                      preprocessing=view.preprocessing, spec=source_spec(source), force=force,
                      **facts)


def prune_structured(source: Artifact, out: Path, data: str, *, ratio: float,
                     criterion: str = "bn", round_to: int = 8, exclude: Sequence[str] = (),
                     epochs: int = 0, batch_size: int = 64, lr: float = 1e-3, augment=None,
                     val_data: str | None = None, limit: int | None = None, seed: int = 0,
                     preprocessing: dict | None = None, force: bool = False,
                     unsafe: bool = False, on_batch: Callable | None = None,
                     on_epoch: Callable | None = None,
                     max_drop: float = DEFAULT_MAX_DROP, allow_worse: bool = False,
                     on_status: Callable[[str], None] = lambda m: None) -> Artifact:
    """Remove ``ratio`` of the channels of every prunable group of ``source`` (see
    ``optimize.channels``), re-estimate batch-norm statistics on ``data``, fine-tune
    ``epochs`` (0: none; ``edgekit finetune --teacher`` distils afterwards), and write ``out``
    with the thinner spec, the groups, and MACs, parameters and validation accuracy before and
    after."""
    from ..evaluate.analyze import keras_counts
    from ..models.zoo import save_child
    from . import channels
    from .finetune import source_spec

    check_output(out, force)
    augment = parse_augment(augment)
    check_fit_args(epochs, batch_size, lr)
    import_keras().utils.set_random_seed(seed)  # before loading: see finetune
    model = load_keras(source.path, unsafe=unsafe)
    probs, _ = classifier_parts(model)
    groups = channels.plan(probs, ratio, criterion, round_to, exclude)
    view = View.of(model, preprocessing or source.preprocessing)
    on_status("reading the data")
    train_data = load_train_data(data, view.size, val_data=val_data, limit=limit, seed=seed)
    check_classes(train_data, output_classes(probs))
    before = top1(probs, train_data.val, view)
    on_status("building the thinner model")
    thin, spec = channels.thin_model(probs, groups, source_spec(source))
    pruned_top1 = top1(thin, train_data.val, view)
    on_status("re-estimating batch-norm statistics")
    n_bn = min(64, math.ceil(len(train_data.train) / batch_size))
    batches = input_batches(train_data.train, batch_size, [view], shuffle=True, seed=seed)
    channels.recalibrate_bn(thin, batches, n_bn)
    recal_top1 = top1(thin, train_data.val, view)
    thin_probs, thin_logits = classifier_parts(thin)
    result = fit(thin_probs, thin_logits, train_data, view, epochs=epochs, batch_size=batch_size,
                 lr=lr, augment=augment, seed=seed, on_batch=on_batch, on_epoch=on_epoch)
    after = top1(thin_probs, train_data.val, view) if epochs else recal_top1
    versus_start = check_not_worse("prune", before, after, train_data.val, max_drop,
                                   allow_worse)
    kept = [g for g in groups if g.keep is not None]
    config = {"method": "channels", "ratio": ratio, "criterion": criterion,
              "round_to": round_to, "exclude": list(exclude), "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "augment": augment, "data": data,
              "val_data": train_data.val_source, "limit": limit, "seed": seed,
              "built_by": "zoo builder (thinner spec)" if spec else "Keras config"}
    src_info, new_info = keras_counts(probs), keras_counts(thin_probs)
    facts = {"pruning": {
        "groups": [g.record() for g in groups],
        "channels": {"before": sum(g.channels for g in kept),
                     "after": sum(len(g.keep) for g in kept)},
        "macs": {"before": src_info["macs"], "after": new_info["macs"],
                 "ratio": round(new_info["macs"] / src_info["macs"], 4)},
        "params": {"before": src_info["params"], "after": new_info["params"]},
        "val_accuracy": {"before": round(before, 2), "pruned": round(pruned_top1, 2),
                         "bn_recalibrated": round(recal_top1, 2), "after": round(after, 2),
                         "drop": round(before - after, 2), "images": len(train_data.val),
                         "bn_batches": n_bn}},
        "finetune": result.summary(), "versus_start": versus_start}
    return save_child(thin_probs, source, out, "prune", config,
                      preprocessing=view.preprocessing, spec=spec, force=force, **facts)
