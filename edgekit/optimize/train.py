"""Training shared by ``finetune`` and ``prune``: labelled images held in memory at the
model's input size, a tf.data pipeline that augments them, a loss that is cross-entropy or
Hinton's distillation loss, and an epoch loop with early stopping, learning-rate reduction on
plateau and the best weights restored.

Keras' ``fit`` and its callbacks do the work. What is written here is what they lack for this
job: one trainer whose loss can take a teacher's logits, best weights tracked across the
freeze/unfreeze phases (``EarlyStopping`` restores only within one ``fit`` call) and not before
a pruning schedule has finished, and a per-epoch record for the sidecar and the console.
TensorFlow and Keras are imported inside the functions.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..core.data import LABELLED, draw, load_dataset, normaliser, read_images, sample_indices
from ..core.errors import BadInput
from ..models.load import import_keras

# name -> (Keras preprocessing layer, its arguments). Applied per image in the input
# pipeline, to float pixels 0..255, before the model's own normalisation.
AUGMENTATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "flip": ("RandomFlip", {"mode": "horizontal"}),
    # pad by 1/8 of the side (reflection) and crop back at a random offset: the ResNet/CIFAR
    # recipe, written as the random translation it is
    "crop": ("RandomTranslation", {"height_factor": 0.125, "width_factor": 0.125,
                                   "fill_mode": "reflect", "interpolation": "nearest"}),
    "rotation": ("RandomRotation", {"factor": 15 / 360, "fill_mode": "reflect"}),
    "brightness": ("RandomBrightness", {"factor": 0.2, "value_range": (0, 255)}),
    "contrast": ("RandomContrast", {"factor": 0.2, "value_range": (0, 255)}),
}

SCHEDULES = ("plateau", "cosine")


def check_schedule(schedule: str) -> None:
    if schedule not in SCHEDULES:
        raise BadInput(f"unknown --schedule {schedule!r}; choose from {', '.join(SCHEDULES)}")


def check_fit_args(epochs: int, batch_size: int, lr: float, patience: int = 1) -> None:
    if epochs < 0 or batch_size < 1 or lr <= 0 or patience < 1:
        raise BadInput(f"--epochs must be >= 0 and --batch-size, --lr and --patience > 0 "
                       f"(got {epochs}, {batch_size}, {lr}, {patience})")


def check_classes(data: "TrainData", outputs: int) -> None:
    """The labels must fit the model's outputs, and there must be two classes to learn."""
    if data.classes < 2:
        raise BadInput(f"{data.source} has {data.classes} class; training needs at least 2")
    if data.classes > outputs:
        raise BadInput(f"{data.source} has {data.classes} classes but the model has {outputs} "
                       "outputs (edgekit finetune --classes makes a new head)")


@dataclass
class Split:
    x: np.ndarray  # uint8 (N, H, W, 3) at the trained model's input size
    y: np.ndarray  # int64 (N,)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class TrainData:
    train: Split
    val: Split
    class_names: list[str] | None
    source: str
    val_source: str

    @property
    def classes(self) -> int:
        seen = int(max(self.train.y.max(), self.val.y.max())) + 1
        return max(seen, len(self.class_names or []))


def parse_augment(text: str | Sequence[str] | None) -> list[str]:
    """``"flip,crop"`` -> ["flip", "crop"]; unknown names exit 2."""
    if not text:
        return []
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise BadInput(f"unknown augmentation '{unknown[0]}' (known: {', '.join(AUGMENTATIONS)})")
    return list(dict.fromkeys(names))


def load_train_data(data: str, size: tuple[int, int], *, val_data: str | None = None,
                    val_fraction: float = 0.1, limit: int | None = None,
                    seed: int = 0) -> TrainData:
    """Labelled images of ``data`` at ``size`` (H, W), RGB uint8 in memory, with a validation
    split: ``val_data``, else ``val_fraction`` of ``data`` held out class-balanced."""
    ds = load_dataset(data)
    if ds.labels is None:
        raise BadInput(f"{data}: training needs {LABELLED}")
    if limit is not None and limit < 2:
        raise BadInput(f"--limit must be at least 2 (got {limit})")
    idx, _ = draw(ds, limit, seed=seed)

    def read(d, indices) -> Split:
        return Split(read_images(d, indices, *size, 3), d.labels[indices].astype(np.int64))

    if val_data:
        vd = load_dataset(val_data)
        if vd.labels is None:
            raise BadInput(f"{val_data}: validation needs {LABELLED}")
        train, val = read(ds, idx), read(vd, np.arange(len(vd)))
        val_source = val_data
    else:
        if len(idx) < 10:
            raise BadInput(f"{data}: {len(idx)} images are too few to hold out a validation "
                           "split; give --val-data")
        n_val = max(1, int(round(len(idx) * val_fraction)))
        held = np.sort(idx[sample_indices(len(idx), n_val, seed=seed, labels=ds.labels[idx])])
        train, val = read(ds, np.setdiff1d(idx, held)), read(ds, held)
        val_source = f"{n_val} images of {data} held out (class-balanced, seed {seed})"
    return TrainData(train, val, ds.class_names, data, val_source)


# --- the model's logits ----------------------------------------------------------------------

def classifier_parts(model) -> tuple[Any, Any]:
    """(model with a softmax output, model of the same layers giving the logits).

    A final ``Dense(activation="softmax")`` (keras.applications) is split into a linear
    ``logits`` Dense with the same weights and a ``predictions`` softmax, so distillation and
    cross-entropy work on logits; the probabilities are unchanged."""
    keras = import_keras()
    if isinstance(model, keras.Sequential):  # the same layers as a functional graph
        model = keras.Model(model.inputs, model.outputs, name=model.name)
    last = model.layers[-1]
    if type(last).__name__ == "FakeQuant":  # a QAT model: softmax, then its fixed range
        before = last.input._keras_history.operation
        if _softmax(before, keras):
            return model, keras.Model(model.inputs, before.input)
    if _softmax(last, keras):
        return model, keras.Model(model.inputs, last.input)
    if isinstance(last, keras.layers.Dense) and _is_softmax_fn(last.activation):
        dense = keras.layers.Dense.from_config({**last.get_config(), "activation": "linear",
                                                "name": "logits"})
        logits = dense(last.input)
        dense.set_weights(last.get_weights())
        probs = keras.layers.Activation("softmax", name="predictions")(logits)
        return keras.Model(model.inputs, probs, name=model.name), keras.Model(model.inputs, logits)
    raise BadInput(f"model '{model.name}' does not end in a softmax (last layer: "
                   f"{last.__class__.__name__} '{last.name}'); edgekit trains softmax classifiers")


def _is_softmax_fn(fn) -> bool:
    return getattr(fn, "__name__", "") == "softmax"


def _softmax(layer, keras) -> bool:
    return isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation) and _is_softmax_fn(layer.activation))


def output_classes(model) -> int:
    return int(model.outputs[0].shape[-1])


# --- the input pipeline ----------------------------------------------------------------------

@dataclass(frozen=True)
class View:
    """What one model takes: input size (H, W) and preprocessing."""

    size: tuple[int, int]
    preprocessing: dict
    channels: int = 3

    @classmethod
    def of(cls, model, preprocessing: dict) -> "View":
        from ..models.load import keras_input_hwc

        h, w, c = keras_input_hwc(model)
        # Training fits whole images (no centre crop), so what it saves must not record one.
        return cls((h, w), {k: v for k, v in preprocessing.items() if k != "crop"}, c)


def input_batches(split: Split, batch_size: int, views: Sequence[View],
                  augment: Sequence[str] = (), shuffle: bool = False, seed: int = 0):
    """A tf.data pipeline of (inputs, labels): one input per view (a tuple when there are
    two: student and teacher see the same augmented image, each at its own size)."""
    import tensorflow as tf

    keras = import_keras()
    layers = [getattr(keras.layers, AUGMENTATIONS[a][0])(**AUGMENTATIONS[a][1], seed=seed + i)
              for i, a in enumerate(augment)]
    norms = [normaliser(v.preprocessing, v.channels) for v in views]
    size = split.x.shape[1:3]

    def gather(i):
        return split.x[i], split.y[i]

    def load(i):
        x, y = tf.numpy_function(gather, [i], (tf.uint8, tf.int64))
        x.set_shape((None, *split.x.shape[1:]))
        y.set_shape((None,))
        return x, y

    def prepare(x, y):
        x = tf.cast(x, tf.float32)
        for layer in layers:
            x = layer(x, training=True)
        out = []
        for view, norm in zip(views, norms):
            v = x if tuple(view.size) == tuple(size) else tf.image.resize(x, view.size,
                                                                          antialias=True)
            if view.channels == 1:  # ITU-R 601 luminance, as edgekit.core.data does
                v = tf.image.rgb_to_grayscale(v)
            out.append(norm(v))
        return (tuple(out) if len(out) > 1 else out[0]), y

    ds = tf.data.Dataset.range(len(split))
    if shuffle:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(load).map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


DEFAULT_MAX_DROP = 5.0  # points of validation top-1 a pruning stage may lose by default


def check_not_worse(stage: str, before: float, after: float, val: Split, max_drop: float,
                    allow_worse: bool = False) -> dict:
    """The start-vs-result record of a training stage; a result more than ``max_drop`` points
    of validation top-1 below a starting model that was above chance stops the stage (exit 1,
    nothing written) unless ``allow_worse``."""
    from ..core.errors import GateFailed

    drop, images = before - after, len(val)
    if drop > max_drop and not allow_worse and above_chance(before, val):
        raise GateFailed(f"{stage}: validation top-1 {after:.2f}% is {drop:.2f} points below "
                         f"the starting model's {before:.2f}% ({images} images; limit "
                         f"--max-drop {max_drop:g}); nothing written",
                         hint="--allow-worse writes it anyway")
    return {"start": round(before, 2), "result": round(after, 2), "drop": round(drop, 2),
            "max_drop": max_drop, "images": images, "allowed_worse": drop > max_drop,
            "start_above_chance": above_chance(before, val)}


def above_chance(top1_pct: float, split: Split) -> bool:
    """Whether a top-1 (%) on ``split`` is more than three standard errors above always
    answering its commonest class: below that, a model has nothing training could lose."""
    p = float(np.bincount(split.y).max() / len(split))
    return top1_pct / 100 > p + 3 * math.sqrt(p * (1 - p) / len(split))


def top1(model, split: Split, view: View, batch_size: int = 256) -> float:
    """Top-1 accuracy (%) of ``model`` on ``split``."""
    correct = 0
    for x, y in input_batches(split, batch_size, [view]):
        correct += int(np.sum(np.argmax(model(x, training=False), axis=-1) == y.numpy()))
    return 100.0 * correct / len(split)


# --- the trainer -----------------------------------------------------------------------------

def _trainer(student_logits, teacher_logits, temperature: float, alpha: float):
    """A Keras model around the student's logits whose loss is cross-entropy, or with a
    teacher ``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE`` (Hinton et al.
    2015, "Distilling the Knowledge in a Neural Network"; T^2 keeps the soft-target gradients
    on the scale of the hard ones). Validation reports the plain cross-entropy."""
    keras = import_keras()
    ops = keras.ops

    class Trainer(keras.Model):
        def __init__(self):
            super().__init__(name="edgekit_trainer")
            self.student, self.teacher = student_logits, teacher_logits
            self.kd_tracker = keras.metrics.Mean(name="kd") if teacher_logits else None

        def call(self, x, training=False):
            return self.student(x[0] if isinstance(x, (tuple, list)) else x, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            ce = super().compute_loss(x, y, y_pred, sample_weight, training)
            if self.teacher is None or not isinstance(x, (tuple, list)):
                return ce
            t = ops.stop_gradient(self.teacher(x[1], training=False)) / temperature
            s = y_pred / temperature
            kl = ops.mean(ops.sum(ops.softmax(t) * (ops.log_softmax(t) - ops.log_softmax(s)),
                                  axis=-1)) * temperature ** 2
            self.kd_tracker.update_state(kl)
            return alpha * kl + (1.0 - alpha) * ce

    return Trainer()


@dataclass
class Teacher:
    logits: Any  # keras model giving the teacher's logits
    view: View
    classes: int


@dataclass
class FitResult:
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    stopped_early: bool = False
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"epochs_run": len(self.epochs), "best_epoch": self.best_epoch,
                "best_val_accuracy": self.best_val_accuracy, "stopped_early": self.stopped_early,
                "seconds": round(self.seconds, 1), "history": self.epochs}


def fit(probs_model, logits_model, data: TrainData, view: View, *, epochs: int,
        batch_size: int = 64, lr: float = 1e-3, augment: Sequence[str] = (),
        teacher: Teacher | None = None, temperature: float = 4.0, alpha: float = 0.7,
        frozen: Sequence[str] = (), unfreeze_after: int | None = None, patience: int = 3,
        best_from_epoch: int = 0, seed: int = 0, schedule: str = "plateau",
        callbacks: Sequence[Any] = (), on_batch: Callable[[int, int, int], None] | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> FitResult:
    """Train ``logits_model`` (sharing its layers with ``probs_model``) on ``data``.

    Layers named in ``frozen`` stay fixed; after ``unfreeze_after`` epochs they are unfrozen
    (batch-norm layers excepted, which keep their statistics, as Keras' transfer-learning
    guide advises) and the learning rate drops tenfold. Early stopping watches validation
    accuracy (``patience`` epochs, never before ``best_from_epoch``). The learning rate
    follows ``schedule``: "plateau" cuts it to 0.3x after ``patience - 1`` epochs without a
    lower validation loss; "cosine" decays it to zero over each phase (Loshchilov & Hutter,
    SGDR, 2017), which converges short runs better than a constant rate. The weights of the
    best validation accuracy from ``best_from_epoch`` on are restored at the end."""
    keras = import_keras()
    check_fit_args(epochs, batch_size, lr, patience)
    check_schedule(schedule)
    if not 0 <= alpha <= 1 or temperature <= 0:
        raise BadInput(f"--alpha must be in [0, 1] and --temperature > 0 "
                       f"(got {alpha}, {temperature})")
    result = FitResult()
    if epochs == 0:
        return result
    keras.utils.set_random_seed(seed)
    views = [view] + ([teacher.view] if teacher else [])
    train_ds = input_batches(data.train, batch_size, views, augment, shuffle=True, seed=seed)
    val_ds = input_batches(data.val, max(batch_size, 256), [view])
    if teacher:
        teacher.logits.trainable = False
    by_name = {layer.name: layer for layer in probs_model.layers}
    with _frozen([by_name[name] for name in frozen]):
        phases = [(0, epochs)]
        if frozen and unfreeze_after is not None and 0 < unfreeze_after < epochs:
            phases = [(0, unfreeze_after), (unfreeze_after, epochs)]
        steps = math.ceil(len(data.train) / batch_size)
        tracker = _tracker(result, probs_model, steps, best_from_epoch, on_batch, on_epoch)
        start, rate = time.perf_counter(), lr
        for i, (first, last) in enumerate(phases):
            if i == 1:
                for name in frozen:
                    if not isinstance(by_name[name], keras.layers.BatchNormalization):
                        by_name[name].trainable = True
                rate = (lr if schedule == "cosine" else tracker.lr) / 10
            tracker.phase = "all" if not frozen else "unfrozen" if i else "frozen"
            trainer = _trainer(logits_model, teacher.logits if teacher else None, temperature,
                               alpha)
            lr_now = rate
            if schedule == "cosine":
                lr_now = keras.optimizers.schedules.CosineDecay(rate, steps * (last - first))
            trainer.compile(optimizer=keras.optimizers.Adam(lr_now),
                            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
            stop = keras.callbacks.EarlyStopping("val_accuracy", patience=patience, mode="max",
                                                 start_from_epoch=best_from_epoch)
            plateau = [] if schedule == "cosine" else [keras.callbacks.ReduceLROnPlateau(
                "val_loss", factor=0.3, min_lr=1e-6, patience=max(1, patience - 1))]
            trainer.fit(train_ds, validation_data=val_ds, epochs=last, initial_epoch=first,
                        shuffle=False, verbose=0, callbacks=[*callbacks, *plateau, stop, tracker])
            # keras also sets stopped_epoch when patience runs out on the very last epoch
            if stop.stopped_epoch and stop.stopped_epoch + 1 < last and i == len(phases) - 1:
                result.stopped_early = True
    tracker.restore_best()
    result.seconds = time.perf_counter() - start
    return result


@contextmanager
def _frozen(layers):
    """Freeze ``layers`` for the block and give them back their flags after it, so the saved
    model does not keep the freezing (Keras saves ``trainable``)."""
    flags = [layer.trainable for layer in layers]
    try:
        for layer in layers:
            layer.trainable = False
        yield
    finally:
        for layer, flag in zip(layers, flags):
            layer.trainable = flag


def _tracker(result: FitResult, probs_model, steps: int, best_from_epoch: int, on_batch,
             on_epoch):
    """A Keras callback that keeps the epoch record, reports progress and holds the weights
    of the best validation accuracy (``restore_best`` puts them back)."""
    keras = import_keras()

    class Tracker(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.best: dict[str, np.ndarray] | None = None
            self.best_key: tuple[float, float] | None = None
            self.phase, self.lr, self.epoch, self.t0 = "", 0.0, 0, 0.0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.t0 = epoch, time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if on_batch:
                on_batch(self.epoch + 1, batch + 1, steps)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.lr = float(np.asarray(self.model.optimizer.learning_rate))
            row = {"epoch": epoch + 1, "phase": self.phase,
                   "loss": _r(logs.get("loss")), "accuracy": _pct(logs.get("accuracy")),
                   "val_loss": _r(logs.get("val_loss")),
                   "val_accuracy": _pct(logs.get("val_accuracy")), "lr": self.lr,
                   "seconds": round(time.perf_counter() - self.t0, 1)}
            if "kd" in logs:
                row["kd_loss"] = _r(logs["kd"])
            result.epochs.append(row)
            key = (row["val_accuracy"] or 0.0, -(row["val_loss"] or 0.0))
            if epoch + 1 > best_from_epoch and (self.best_key is None or key > self.best_key):
                self.best_key = key
                self.best = {v.path: v.numpy() for v in probs_model.weights}
                result.best_epoch, result.best_val_accuracy = epoch + 1, row["val_accuracy"]
            if on_epoch:
                on_epoch(row)

        def restore_best(self) -> None:
            if self.best is not None:
                for v in probs_model.weights:
                    v.assign(self.best[v.path])

    return Tracker()


def _r(x) -> float | None:
    return None if x is None else round(float(x), 4)


def _pct(x) -> float | None:
    return None if x is None else round(100.0 * float(x), 2)
