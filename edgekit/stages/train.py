"""The stages that train a Keras model: ``prune`` and ``finetune``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.errors import BadInput
from .base import QUIET, Options, Reporter, Stage, option
from .common import PREP_HELP, UNSAFE_HELP, default_output, open_model

DATA_HELP = ("Labelled training data: folder of class folders, .npz, IDX file or "
             "fashion-mnist[-sample]:train.")
VAL_HELP = "Labelled validation data (default: 10% of --data held out, class-balanced)."
LIMIT_HELP = "Use this many images of --data (class-balanced)."
AUGMENT_HELP = ("Comma-separated: flip, crop, rotation, brightness, contrast (in the input "
                "pipeline).")
BATCH_HELP = "Images per training step."
SEED_HELP = "Seed of the shuffling, augmentation and split."


def _callbacks(reporter: Reporter) -> dict:
    """The training loop's callbacks, told to ``reporter``."""
    return {"on_batch": lambda epoch, step, steps: reporter.progress(step, steps,
                                                                     f"epoch {epoch}"),
            "on_epoch": reporter.epoch,
            "on_status": lambda message: reporter.progress(0, None, message)}


class PruneOptions(Options):
    sparsity: Optional[float] = option(None, "Unstructured: share of Conv2D/Dense weights set "
                                       "to zero (0-1).")
    structured: bool = option(False, "Remove whole channels (fewer MACs, faster) instead of "
                              "single weights.")
    ratio: Optional[float] = option(None, "Structured: share of the channels removed from "
                                    "every prunable group (0-1).")
    data: str = option(..., DATA_HELP)
    epochs: Optional[int] = option(None, "Fine-tuning epochs (default: 2 unstructured, during "
                                   "which sparsity ramps up; 0 structured: use finetune "
                                   "--teacher next).")
    scope: str = option("layer", "Unstructured: layer (same sparsity in every layer) | global "
                        "(one magnitude threshold).")
    criterion: str = option("bn", "Structured channel importance: bn (batch-norm scale) | l1 | "
                            "l2 (filter norm).")
    round_to: int = option(8, "Structured: keep channel counts in multiples of this (1: exact).")
    exclude: list[str] = option([], "Layer name or glob to leave alone (repeatable).")
    lr: Optional[float] = option(None, "Learning rate (default: 1e-4 unstructured, 1e-3 "
                                 "structured).")
    max_drop: float = option(5.0, "Largest loss of validation top-1 (points) against the "
                             "starting model; beyond it nothing is written and the exit code "
                             "is 1.")
    allow_worse: bool = option(False, "Write the pruned model even when it loses more than "
                               "--max-drop (e.g. to distil next).")
    batch_size: int = option(64, BATCH_HELP)
    augment: Optional[str] = option(None, AUGMENT_HELP)
    val_data: Optional[str] = option(None, VAL_HELP)
    limit: Optional[int] = option(None, LIMIT_HELP)
    seed: int = option(0, SEED_HELP)
    preprocessing: Optional[str] = option(None, PREP_HELP)
    unsafe: bool = option(False, UNSAFE_HELP)


def prune(model: Path, o: PruneOptions, output: Optional[Path], *, force: bool = False,
          reporter: Reporter = QUIET):
    """Prune a Keras model: unstructured magnitude pruning (--sparsity, smaller when
    compressed) or structured channel pruning (--structured --ratio, fewer MACs, faster).

    Returns the pruned model's Artifact; its sidecar's ``pruning`` holds what was measured."""
    from ..core.artifacts import check_output

    if o.structured and (o.ratio is None or o.sparsity is not None):
        raise BadInput("--structured takes --ratio (the share of channels to remove), "
                       "not --sparsity")
    if not o.structured and (o.sparsity is None or o.ratio is not None):
        raise BadInput("give --sparsity S for unstructured pruning, or --structured --ratio R")
    if o.epochs is not None and o.epochs < 0:
        raise BadInput(f"--epochs must be >= 0 (got {o.epochs})")
    if not o.max_drop >= 0:
        raise BadInput(f"--max-drop must be >= 0 (got {o.max_drop})")
    output = output or default_output(model, ".keras", "thin" if o.structured else "sparse")
    check_output(output, force, suffix=".keras")
    source = open_model(model, o.preprocessing, needed_for="training on --data",
                        keras_for="training", unsafe=o.unsafe)
    common = dict(batch_size=o.batch_size, augment=o.augment, val_data=o.val_data,
                  limit=o.limit, seed=o.seed, preprocessing=source.preprocessing, force=force,
                  unsafe=o.unsafe, exclude=list(o.exclude), max_drop=o.max_drop,
                  allow_worse=o.allow_worse, **_callbacks(reporter))
    reporter.progress(0, None, "preparing")
    if o.structured:
        from ..optimize.prune import prune_structured

        return prune_structured(source, output, o.data, ratio=o.ratio, criterion=o.criterion,
                                round_to=o.round_to, epochs=o.epochs or 0,
                                lr=1e-3 if o.lr is None else o.lr, **common)
    from ..optimize.prune import prune_unstructured

    return prune_unstructured(source, output, o.data, sparsity=o.sparsity, scope=o.scope,
                              epochs=2 if o.epochs is None else o.epochs,
                              lr=1e-4 if o.lr is None else o.lr, **common)


class FinetuneOptions(Options):
    data: str = option(..., DATA_HELP)
    classes: Optional[int] = option(None, "Output classes (default: those of --data); a new "
                                    "head is made if the model has another number.")
    teacher: Optional[Path] = option(None, "Keras model to distil from (same classes; any "
                                     "input size).")
    temperature: float = option(4.0, "Distillation temperature T.")
    alpha: float = option(0.7, "Weight of the distillation loss; 1 - alpha weighs "
                          "cross-entropy on the labels.")
    freeze: Optional[str] = option(None, "Freeze the first N layers, every layer up to and "
                                   "including the one named, or every layer before a block "
                                   "(e.g. block5a).")
    unfreeze_after: Optional[int] = option(None, "Unfreeze after this many epochs (learning "
                                           "rate / 10).")
    augment: Optional[str] = option(None, AUGMENT_HELP)
    epochs: int = option(10, "Most epochs to train.")
    lr: float = option(1e-3, "Learning rate (Adam).")
    schedule: Optional[str] = option(None, "Learning-rate schedule: plateau (cut 0.3x when the "
                                     "validation loss stalls) or cosine (decay to zero over "
                                     "the epochs; better for short runs). Default: cosine "
                                     "with --qat, else plateau.")
    patience: int = option(3, "Stop after this many epochs without better validation accuracy "
                           "(learning rate cut after one fewer).")
    bn_momentum: Optional[float] = option(None, "Batch-norm momentum while training (e.g. 0.9 "
                                          "for short runs).")
    qat: bool = option(False, "Quantization-aware training: train the model as TFLite int8 "
                       "runs it (batch norm folded, weights and activations fake-quantized); "
                       "`quantize --mode int8` then needs no --calib. With --teacher (the float "
                       "model) use --lr 1e-4 --schedule plateau; without one, the defaults "
                       "(--lr 1e-3, cosine).")
    batch_size: int = option(64, BATCH_HELP)
    val_data: Optional[str] = option(None, VAL_HELP)
    limit: Optional[int] = option(None, LIMIT_HELP)
    seed: int = option(0, SEED_HELP)
    preprocessing: Optional[str] = option(None, PREP_HELP)
    teacher_preprocessing: Optional[str] = option(None, "The teacher's, if it has no sidecar "
                                                  "(tf | torch | unit | raw).")
    unsafe: bool = option(False, UNSAFE_HELP)


def finetune(model: Path, o: FinetuneOptions, output: Optional[Path], *, force: bool = False,
             reporter: Reporter = QUIET):
    """Fine-tune a Keras model: transfer learning (new head, frozen layers), augmentation,
    and knowledge distillation from --teacher; best validation weights are kept.

    Returns the trained model's Artifact; its sidecar's ``finetune`` holds the history."""
    from ..core.artifacts import check_output
    from ..optimize.finetune import finetune as train

    output = output or default_output(model, ".keras", "finetuned")
    check_output(output, force, suffix=".keras")
    source = open_model(model, o.preprocessing, needed_for="training on --data",
                        keras_for="training", unsafe=o.unsafe)
    reporter.progress(0, None, "preparing")
    return train(source, output, o.data, val_data=o.val_data, classes=o.classes,
                 teacher=o.teacher, temperature=o.temperature, alpha=o.alpha, freeze=o.freeze,
                 unfreeze_after=o.unfreeze_after, augment=o.augment, epochs=o.epochs,
                 batch_size=o.batch_size, lr=o.lr, schedule=o.schedule, patience=o.patience,
                 bn_momentum=o.bn_momentum, qat=o.qat, limit=o.limit, seed=o.seed,
                 preprocessing=source.preprocessing,
                 teacher_preprocessing=o.teacher_preprocessing, force=force, unsafe=o.unsafe,
                 **_callbacks(reporter))


_OUT_HELP = "Output .keras (default: MODEL_<tag>.keras)."
PRUNE = Stage("prune", PruneOptions, prune, source_help="Keras model (.keras, .h5).",
              output_help=_OUT_HELP)
FINETUNE = Stage("finetune", FinetuneOptions, finetune,
                 source_help="Keras model (.keras, .h5) to train further.", output_help=_OUT_HELP)
