"""``edgekit finetune``: transfer learning (a new head, frozen layers, an unfreeze schedule),
augmentation, and knowledge distillation from a teacher, on top of ``optimize.train``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ..core.artifacts import Artifact, check_output, open_artifact
from ..core.errors import BadInput
from ..models.load import import_keras, load_keras
from .train import (Teacher, TrainData, View, above_chance, check_classes, check_fit_args,
                    check_schedule, classifier_parts, fit, load_train_data, output_classes,
                    parse_augment, top1)


def source_spec(art: Artifact):
    """The zoo architecture spec recorded in ``art``'s sidecar, or None."""
    from ..models.spec import spec_from_dict

    return spec_from_dict(art.meta["spec"]) if art.meta.get("spec") else None


def new_head(probs_model, classes: int) -> tuple[Any, Any]:
    """Replace the classifier with a fresh ``logits`` Dense of ``classes`` units and a
    ``predictions`` softmax, fed by whatever fed the old one (flattened if it was a 1x1 conv,
    as in keras.applications MobileNetV3). Returns (probs model, logits model)."""
    keras = import_keras()
    layer = probs_model.layers[-1]
    while not isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
        if isinstance(layer.input, (list, tuple)):
            raise BadInput(f"cannot find the classifier layer of '{probs_model.name}'")
        layer = _producer(probs_model, layer)
    features = layer.input
    x = keras.layers.Flatten(name="head_flatten")(features) if len(features.shape) > 2 else features
    logits = keras.layers.Dense(classes, name="logits")(x)
    probs = keras.layers.Activation("softmax", name="predictions")(logits)
    return (keras.Model(probs_model.inputs, probs, name=probs_model.name),
            keras.Model(probs_model.inputs, logits))


def _producer(model, layer):
    """The layer whose output ``layer`` reads (single-input layers)."""
    for cand in model.layers:
        if cand.output is layer.input:
            return cand
    raise BadInput(f"cannot find the classifier layer of '{model.name}'")


def frozen_layers(model, freeze: str | int | None) -> list[str]:
    """Names of the layers ``--freeze`` names: the first N layers, up to and including the
    named one, or every layer before a named block such as ``block5a`` (Keras'
    ``model.layers`` order, input layer included, as in Keras' guide)."""
    if freeze is None or freeze == "":
        return []
    names = [layer.name for layer in model.layers]
    if isinstance(freeze, int) or str(freeze).isdigit():
        n = int(freeze)
        frozen = names[:n]
    elif freeze in names:
        frozen = names[:names.index(freeze) + 1]
    elif any(n.startswith(f"{freeze}_") for n in names):  # a zoo block: its layers' prefix
        frozen = names[:next(i for i, n in enumerate(names) if n.startswith(f"{freeze}_"))]
    else:
        raise BadInput(f"--freeze: no layer or block named '{freeze}' in the model")
    if all(layer.name in frozen for layer in model.layers if layer.weights):
        raise BadInput(f"--freeze {freeze} leaves no layer with weights to train")
    return frozen


def open_teacher(path: Path, unsafe: bool, preprocessing: str | None) -> Teacher:
    from ..core.preprocessing import resolve

    art = open_artifact(path)
    if art.format != "keras":
        raise BadInput(f"--teacher must be a Keras model, not {art.format}")
    model = load_keras(path, unsafe=unsafe)
    view = View.of(model, resolve(art, preprocessing, needed_for="--teacher", model=model,
                                  flag_name="--teacher-preprocessing"))
    return Teacher(classifier_parts(model)[1], view, output_classes(model))


def finetune(source: Artifact, out: Path, data: str, *, val_data: str | None = None,
             classes: int | None = None, teacher: Path | None = None, temperature: float = 4.0,
             alpha: float = 0.7, freeze: str | None = None, unfreeze_after: int | None = None,
             augment: str | Sequence[str] | None = None, epochs: int = 10, batch_size: int = 64,
             lr: float = 1e-3, schedule: str | None = None, patience: int = 3,
             bn_momentum: float | None = None, qat: bool = False,
             limit: int | None = None, seed: int = 0, preprocessing: dict | None = None,
             teacher_preprocessing: str | None = None, force: bool = False,
             unsafe: bool = False, on_batch: Callable | None = None,
             on_epoch: Callable | None = None, on_status: Callable[[str], None] = lambda m: None
             ) -> Artifact:
    """Fine-tune ``source`` on ``data`` and write ``out`` (.keras) with a sidecar recording
    the run. ``classes`` defaults to the data's class count; a new head is made when it
    differs from the model's outputs."""
    from ..models.zoo import save_child

    check_output(out, force)
    augment = parse_augment(augment)
    schedule = schedule or ("cosine" if qat else "plateau")  # QAT: short runs (README)
    check_schedule(schedule)
    if epochs < 1:
        raise BadInput(f"--epochs must be at least 1 (got {epochs})")
    if bn_momentum is not None and not 0 <= bn_momentum < 1:
        raise BadInput(f"--bn-momentum must be in [0, 1) (got {bn_momentum})")
    if unfreeze_after is not None and (freeze is None or not 1 <= unfreeze_after < epochs):
        raise BadInput(f"--unfreeze-after needs --freeze and a number of epochs from 1 to "
                       f"--epochs - 1 (got {unfreeze_after} of {epochs})")
    check_fit_args(epochs, batch_size, lr, patience)
    keras = import_keras()
    # before anything is loaded or made: layers without a seed of their own (dropout, a new
    # head's initializers) draw one from the global generators when they are made, so
    # without this the result depends on what ran earlier in the process
    keras.utils.set_random_seed(seed)
    model = load_keras(source.path, unsafe=unsafe)
    view = View.of(model, preprocessing or source.preprocessing)
    teach = open_teacher(teacher, unsafe, teacher_preprocessing) if teacher else None
    # images are held at the larger input size, so a bigger teacher never sees upsampled ones
    size = max(view.size, teach.view.size if teach else view.size, key=lambda s: s[0] * s[1])
    on_status("reading the data")
    train_data = load_train_data(data, size, val_data=val_data, limit=limit, seed=seed)
    classes = classes or train_data.classes
    if teach and teach.classes != classes:
        raise BadInput(f"the teacher has {teach.classes} outputs but the student is trained "
                       f"for {classes} classes")
    if classes < train_data.classes:
        raise BadInput(f"--classes {classes} is fewer than the {train_data.classes} classes "
                       f"in {data}")
    check_classes(train_data, classes)
    probs, logits = classifier_parts(model)
    head = output_classes(model) != classes
    if head:
        probs, logits = new_head(probs, classes)
    from .qat import is_qat, to_qat

    trained_qat = is_qat(probs)  # fine-tuned further, it stays a QAT model
    if qat:  # trained as TFLite int8 runs it; the first batch sets the activation ranges
        if trained_qat:
            raise BadInput(f"{source.path} was already trained with --qat: fine-tune it "
                           "without --qat (it keeps its fake-quant layers)")
        probs, logits = classifier_parts(to_qat(probs))
    frozen = frozen_layers(probs, freeze)
    bns = [layer for layer in probs.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in bns]
    if bn_momentum is not None:  # for this run only: the saved model keeps its own
        for layer in bns:
            layer.momentum = bn_momentum
    # a new head starts at chance; a QAT model has no ranges before its first batch
    start = None if head or qat else top1(probs, train_data.val, view)
    start_weights = [v.numpy() for v in probs.weights]
    on_status("training")
    try:
        result = fit(probs, logits, train_data, view, epochs=epochs, batch_size=batch_size,
                     lr=lr, augment=augment, teacher=teach, temperature=temperature,
                     alpha=alpha, frozen=frozen, unfreeze_after=unfreeze_after,
                     patience=patience, seed=seed, schedule=schedule, on_batch=on_batch,
                     on_epoch=on_epoch)
    finally:
        for layer, m in zip(bns, momenta):
            layer.momentum = m
    kept_start = (start is not None and above_chance(start, train_data.val)
                  and (result.best_val_accuracy or 0.0) < start)
    if kept_start:  # training did not beat the model it started from: keep that one
        for v, w in zip(probs.weights, start_weights):
            v.assign(w)
    # a QAT model is no longer the zoo's spec: nothing may rebuild it from one
    spec = None if qat else source_spec(source)
    if spec is not None and head:
        spec = replace(spec, classes=classes)
    config = {"data": data, "val_data": train_data.val_source, "classes": classes,
              "new_head": head, "freeze": freeze, "frozen_layers": len(frozen),
              "unfreeze_after": unfreeze_after, "augment": augment, "epochs": epochs,
              "batch_size": batch_size, "lr": lr, "schedule": schedule, "patience": patience,
              "bn_momentum": bn_momentum, "limit": limit, "seed": seed,
              "qat": _qat_record(source) if qat else _qat_continued(source) if trained_qat
              else None,
              "teacher": _teacher_record(teacher, teach, temperature, alpha) if teach else None,
              "image_size": list(size)}
    return save_child(probs, source, out, "finetune", config, preprocessing=view.preprocessing,
                      spec=spec, force=force,
                      labels=_labels(train_data, classes) or (None if head else source.labels),
                      finetune={**result.summary(), "train_images": len(train_data.train),
                                "val_images": len(train_data.val),
                                "start_val_accuracy": None if start is None else round(start, 2),
                                "kept_start": kept_start})


def _qat_record(source: Artifact) -> dict:
    """What --qat did, and the float model it started from."""
    from .qat import MOMENTUM

    return {"scheme": "tflite int8: batch norm folded, weights per channel symmetric (dense "
                      "per tensor), activations per tensor", "range_momentum": MOMENTUM,
            "float_parent": {"path": str(source.path), "sha256": source.sha256}}


def _qat_continued(source: Artifact) -> dict:
    """The record of more training of a QAT model: its own QAT record, and the model."""
    config = ((source.meta.get("stage") or {}).get("config") or {}).get("qat") or {}
    return {**{k: v for k, v in config.items() if k != "continued_from"},
            "continued_from": {"path": str(source.path), "sha256": source.sha256}}


def _teacher_record(path: Path, teacher: Teacher, temperature: float, alpha: float) -> dict:
    art = open_artifact(path)
    return {"path": str(path), "sha256": art.sha256, "input_size": list(teacher.view.size),
            "preprocessing": teacher.view.preprocessing,
            "temperature": temperature, "alpha": alpha,
            "loss": "alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy"}


def _labels(data: TrainData, classes: int) -> list[str] | None:
    names = data.class_names
    return names if names and len(names) == classes else None
