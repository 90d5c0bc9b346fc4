"""What ``edgekit prune`` and ``edgekit finetune`` print (the commands are made from the
stages' options models: ``edgekit.stages.train``)."""

from __future__ import annotations

from rich.table import Table

from .._common import console, fmt_count


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


def render_prune(art) -> None:
    """The pruned layers or channel groups, and top-1 before and after."""
    structured = "groups" in art.meta["pruning"]
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


def render_finetune(art) -> None:
    """The epochs, and the best validation top-1."""
    from ...core.preprocessing import describe

    prep = art.meta.get("preprocessing")
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
