"""``edgekit prune`` and ``edgekit finetune``: the commands that train."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.table import Table

from ._common import (FORCE_OPT, JSON_OPT, PREP_OPT, SAVE_RECIPE_OPT, UNSAFE_OPT, console,
                      default_output, emit_json, fmt_count, progress_bar, recipe_saver)

DATA_OPT = typer.Option(..., "--data", help="Labelled training data: folder of class folders, "
                        ".npz, IDX file or fashion-mnist[-sample]:train.")
VAL_OPT = typer.Option(None, "--val-data", help="Labelled validation data (default: 10% of "
                       "--data held out, class-balanced).")
LIMIT_OPT = typer.Option(None, "--limit", help="Use this many images of --data (class-balanced).")
AUGMENT_OPT = typer.Option(None, "--augment", help="Comma-separated: flip, crop, rotation, "
                           "brightness, contrast (in the input pipeline).")
BATCH_OPT = typer.Option(64, "--batch-size", help="Images per training step.")
SEED_OPT = typer.Option(0, "--seed", help="Seed of the shuffling, augmentation and split.")
OUT_OPT = typer.Option(None, "-o", "--output", help="Output .keras (default: MODEL_<tag>.keras).")


@contextlib.contextmanager
def _live(quiet: bool) -> Iterator[dict]:
    """Callbacks for the library: a progress bar per epoch and a line per finished epoch."""
    if quiet:
        yield {}
        return
    with progress_bar("preparing") as update:
        yield {"on_batch": lambda epoch, step, steps: update(step, steps, f"epoch {epoch}"),
               "on_epoch": lambda row: console.print(_epoch_line(row)),
               "on_status": lambda message: update(0, None, message)}


def _epoch_line(row: dict) -> str:
    kd = f"  kd {row['kd_loss']:.4f}" if "kd_loss" in row else ""
    return (f"epoch {row['epoch']:>3}  loss {row['loss']:.4f}  acc {row['accuracy']:.2f}%  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.2f}%  "
            f"lr {row['lr']:.2g}  {row['seconds']:.0f}s{kd}  ({row['phase']})")


def _epoch_table(summary: dict) -> None:
    rows = summary.get("history") or []
    if not rows:
        return
    table = Table(title="training", title_justify="left")
    for col in ("epoch", "loss", "acc %", "val loss", "val acc %", "lr", "s"):
        table.add_column(col, justify="right")
    for r in rows:
        best = " *" if r["epoch"] == summary["best_epoch"] else ""
        table.add_row(f"{r['epoch']}{best}", f"{r['loss']:.4f}", f"{r['accuracy']:.2f}",
                      f"{r['val_loss']:.4f}", f"{r['val_accuracy']:.2f}", f"{r['lr']:.2g}",
                      f"{r['seconds']:.0f}")
    console.print(table)
    console.print(f"best epoch {summary['best_epoch']} (*), weights restored"
                  + ("; stopped early" if summary["stopped_early"] else ""))


def _source(model: Path, preprocessing: Optional[str], unsafe: bool = False):
    from ..artifacts import open_artifact
    from ..errors import BadInput
    from ..models.load import load_keras
    from ..preprocessing import resolve

    art = open_artifact(model)
    if art.format != "keras":
        raise BadInput(f"{model}: training needs a Keras model (.keras or .h5), not {art.format}")
    graph = None if preprocessing or art.preprocessing else load_keras(art.path, unsafe=unsafe)
    return art, resolve(art, preprocessing, needed_for="training on --data", model=graph)


def prune(
    model: Path = typer.Argument(..., help="Keras model (.keras, .h5)."),
    sparsity: Optional[float] = typer.Option(None, "--sparsity", help="Unstructured: share of "
                                             "Conv2D/Dense weights set to zero (0-1)."),
    structured: bool = typer.Option(False, "--structured", help="Remove whole channels "
                                    "(fewer MACs, faster) instead of single weights."),
    ratio: Optional[float] = typer.Option(None, "--ratio", help="Structured: share of the "
                                          "channels removed from every prunable group (0-1)."),
    data: str = DATA_OPT,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Fine-tuning epochs (default: "
                                         "2 unstructured, during which sparsity ramps up; "
                                         "0 structured: use finetune --teacher next)."),
    scope: str = typer.Option("layer", "--scope", help="Unstructured: layer (same sparsity "
                              "in every layer) | global (one magnitude threshold)."),
    criterion: str = typer.Option("bn", "--criterion", help="Structured channel importance: "
                                  "bn (batch-norm scale) | l1 | l2 (filter norm)."),
    round_to: int = typer.Option(8, "--round-to", help="Structured: keep channel counts in "
                                 "multiples of this (1: exact)."),
    exclude: list[str] = typer.Option([], "--exclude", help="Layer name or glob to leave "
                                      "alone (repeatable)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: 1e-4 "
                                       "unstructured, 1e-3 structured)."),
    max_drop: float = typer.Option(5.0, "--max-drop", help="Largest loss of validation top-1 "
                                   "(points) against the starting model; beyond it nothing is "
                                   "written and the exit code is 1."),
    allow_worse: bool = typer.Option(False, "--allow-worse", help="Write the pruned model even "
                                     "when it loses more than --max-drop (e.g. to distil next)."),
    batch_size: int = BATCH_OPT,
    augment: Optional[str] = AUGMENT_OPT,
    val_data: Optional[str] = VAL_OPT,
    limit: Optional[int] = LIMIT_OPT,
    seed: int = SEED_OPT,
    output: Optional[Path] = OUT_OPT,
    preprocessing: Optional[str] = PREP_OPT,
    save_recipe: Optional[Path] = SAVE_RECIPE_OPT,
    force: bool = FORCE_OPT,
    unsafe: bool = UNSAFE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Prune a Keras model: unstructured magnitude pruning (--sparsity, smaller when
    compressed) or structured channel pruning (--structured --ratio, fewer MACs, faster)."""
    args = dict(locals())  # the parameters, for --save-recipe
    save = recipe_saver(save_recipe, "prune", args, force)
    from ..artifacts import check_output
    from ..errors import BadInput

    if structured and (ratio is None or sparsity is not None):
        raise BadInput("--structured takes --ratio (the share of channels to remove), "
                       "not --sparsity")
    if not structured and (sparsity is None or ratio is not None):
        raise BadInput("give --sparsity S for unstructured pruning, or --structured --ratio R")
    if epochs is not None and epochs < 0:
        raise BadInput(f"--epochs must be >= 0 (got {epochs})")
    if not max_drop >= 0:
        raise BadInput(f"--max-drop must be >= 0 (got {max_drop})")
    output = output or default_output(model, ".keras", "thin" if structured else "sparse")
    check_output(output, force, suffix=".keras")
    source, prep = _source(model, preprocessing, unsafe)
    common = dict(batch_size=batch_size, augment=augment, val_data=val_data, limit=limit,
                  seed=seed, preprocessing=prep, force=force, unsafe=unsafe,
                  exclude=list(exclude), max_drop=max_drop, allow_worse=allow_worse)
    with _live(json_out) as callbacks:
        if structured:
            from ..optimize.prune import prune_structured

            art = prune_structured(source, output, data, ratio=ratio, criterion=criterion,
                                   round_to=round_to, epochs=0 if epochs is None else epochs,
                                   lr=1e-3 if lr is None else lr, **common, **callbacks)
        else:
            from ..optimize.prune import prune_unstructured

            art = prune_unstructured(source, output, data, sparsity=sparsity, scope=scope,
                                     epochs=2 if epochs is None else epochs,
                                     lr=1e-4 if lr is None else lr,
                                     **common, **callbacks)
    save()
    if json_out:
        emit_json({**art.meta, "schema": "edgekit.prune/1", "path": str(art.path)})
        return
    p = art.meta["pruning"]
    _epoch_table(art.meta["finetune"])
    acc = p["val_accuracy"]
    if structured:
        table = Table(title="pruned channel groups", title_justify="left")
        for col in ("producer", "channels", "kept", "criterion"):
            table.add_column(col, justify="left" if col == "producer" else "right")
        skipped: dict[str, int] = {}
        for g in p["groups"]:
            if "kept" in g:
                table.add_row(g["producer"], str(g["channels"]), str(g["kept"]), g["criterion"])
            else:
                why = g["skipped"].split(" '")[0] if "reach" in g["skipped"] else g["skipped"]
                skipped[why] = skipped.get(why, 0) + 1
        console.print(table)
        for why, n in skipped.items():
            console.print(f"  {n} group(s) left whole: {why}")
        console.print(f"MACs {fmt_count(p['macs']['before'])} -> {fmt_count(p['macs']['after'])}"
                      f" ({p['macs']['ratio']:.2f}x), params {fmt_count(p['params']['before'])}"
                      f" -> {fmt_count(p['params']['after'])}")
        console.print(f"validation top-1 ({acc['images']} images): {acc['before']:.2f}% -> "
                      f"{acc['pruned']:.2f}% pruned, {acc['bn_recalibrated']:.2f}% after "
                      f"batch-norm re-estimation, {acc['after']:.2f}% final")
    else:
        table = Table(title="sparsity per layer (measured)", title_justify="left")
        for col in ("layer", "weights", "sparsity"):
            table.add_column(col, justify="left" if col == "layer" else "right")
        for r in p["layers"]:
            table.add_row(r["layer"], fmt_count(r["weights"]), f"{100 * r['sparsity']:.1f}%")
        console.print(table)
        sz = p["tflite_fp32"]
        console.print(f"sparsity {100 * p['pruned_layers_sparsity']:.1f}% of pruned layers, "
                      f"{100 * p['model_sparsity']:.1f}% of all weights; float .tflite gzip "
                      f"{sz['pruned']['gzip_bytes'] / 1e6:.2f} MB vs dense "
                      f"{sz['dense']['gzip_bytes'] / 1e6:.2f} MB ({sz['gzip_ratio']:.2f}x)")
        console.print(f"validation top-1 ({acc['images']} images): {acc['before']:.2f}% -> "
                      f"{acc['after']:.2f}%")
    vs = art.meta["versus_start"]
    if vs["allowed_worse"] and vs["start_above_chance"]:
        console.print(f"[yellow]{vs['drop']:.2f} points below the starting model, over "
                      f"--max-drop {vs['max_drop']:g}: written because of --allow-worse[/]")
    console.print(f"wrote {art.path}")


def finetune(
    model: Path = typer.Argument(..., help="Keras model (.keras, .h5) to train further."),
    data: str = DATA_OPT,
    classes: Optional[int] = typer.Option(None, "--classes", help="Output classes (default: "
                                          "those of --data); a new head is made if the model "
                                          "has another number."),
    teacher: Optional[Path] = typer.Option(None, "--teacher", help="Keras model to distil "
                                           "from (same classes; any input size)."),
    temperature: float = typer.Option(4.0, "--temperature", help="Distillation temperature T."),
    alpha: float = typer.Option(0.7, "--alpha", help="Weight of the distillation loss; "
                                "1 - alpha weighs cross-entropy on the labels."),
    freeze: Optional[str] = typer.Option(None, "--freeze", help="Freeze the first N layers, "
                                         "every layer up to and including the one named, or "
                                         "every layer before a block (e.g. block5a)."),
    unfreeze_after: Optional[int] = typer.Option(None, "--unfreeze-after", help="Unfreeze "
                                                 "after this many epochs (learning rate / 10)."),
    augment: Optional[str] = AUGMENT_OPT,
    epochs: int = typer.Option(10, "--epochs", help="Most epochs to train."),
    lr: float = typer.Option(1e-3, "--lr", help="Learning rate (Adam)."),
    schedule: str = typer.Option("plateau", "--schedule", help="Learning-rate schedule: "
                                 "plateau (cut 0.3x when the validation loss stalls) or cosine "
                                 "(decay to zero over the epochs; better for short runs)."),
    patience: int = typer.Option(3, "--patience", help="Stop after this many epochs without "
                                 "better validation accuracy (learning rate cut after one fewer)."),
    bn_momentum: Optional[float] = typer.Option(None, "--bn-momentum", help="Batch-norm "
                                                "momentum while training (e.g. 0.9 for short runs)."),
    batch_size: int = BATCH_OPT,
    val_data: Optional[str] = VAL_OPT,
    limit: Optional[int] = LIMIT_OPT,
    seed: int = SEED_OPT,
    output: Optional[Path] = OUT_OPT,
    preprocessing: Optional[str] = PREP_OPT,
    teacher_preprocessing: Optional[str] = typer.Option(None, "--teacher-preprocessing",
                                                        help="The teacher's, if it has no "
                                                        "sidecar (tf | torch | unit | raw)."),
    save_recipe: Optional[Path] = SAVE_RECIPE_OPT,
    force: bool = FORCE_OPT,
    unsafe: bool = UNSAFE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Fine-tune a Keras model: transfer learning (new head, frozen layers), augmentation,
    and knowledge distillation from --teacher; best validation weights are kept."""
    args = dict(locals())  # the parameters, for --save-recipe
    save = recipe_saver(save_recipe, "finetune", args, force)
    from ..artifacts import check_output
    from ..optimize.distill import finetune as run
    from ..preprocessing import describe

    output = output or default_output(model, ".keras", "finetuned")
    check_output(output, force, suffix=".keras")
    source, prep = _source(model, preprocessing, unsafe)
    with _live(json_out) as callbacks:
        art = run(source, output, data, val_data=val_data, classes=classes, teacher=teacher,
                  temperature=temperature, alpha=alpha, freeze=freeze,
                  unfreeze_after=unfreeze_after, augment=augment, epochs=epochs,
                  batch_size=batch_size, lr=lr, schedule=schedule, patience=patience,
                  bn_momentum=bn_momentum,
                  limit=limit, seed=seed, preprocessing=prep,
                  teacher_preprocessing=teacher_preprocessing, force=force, unsafe=unsafe,
                  **callbacks)
    save()
    if json_out:
        emit_json({**art.meta, "schema": "edgekit.finetune/1", "path": str(art.path)})
        return
    summary = art.meta["finetune"]
    _epoch_table(summary)
    cfg = art.meta["stage"]["config"]
    extra = f", distilled from {cfg['teacher']['path']}" if cfg.get("teacher") else ""
    console.print(f"preprocessing: {describe(prep)}")
    if summary.get("kept_start"):
        console.print(f"[yellow]training did not beat the starting model "
                      f"({summary['start_val_accuracy']:.2f}% validation top-1): its weights "
                      f"are written unchanged[/]")
        console.print(f"wrote {art.path}{extra}")
        return
    start = summary.get("start_val_accuracy")
    console.print(f"wrote {art.path}: best validation top-1 {summary['best_val_accuracy']:.2f}% "
                  f"on {summary['val_images']} images"
                  + (f" (start {start:.2f}%)" if start is not None else "") + extra)
