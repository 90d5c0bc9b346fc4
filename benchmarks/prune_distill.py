"""Pruning and distillation on Fashion-MNIST-trained MobileNetV2 and EfficientNet-Lite0.

Everything runs through the real CLI in child processes, as a user would run it:

1. ``edgekit zoo build FAMILY --resolution R --classes 10`` then
   ``edgekit finetune base --data fashion-mnist:train --epochs E --bn-momentum 0.9 --lr 3e-3
   --schedule cosine --augment flip`` (the full 60,000-image train split, 10% held out for
   validation): the trained model. Every step is cached in --out under a name that carries
   the settings it depends on.
2. Unstructured: ``edgekit prune trained --sparsity 0.5 --epochs 2``; both models quantized
   with ``edgekit quantize --mode int8 --calib fashion-mnist:train``; the figures are the top-1
   drop (float and int8) on the 10,000-image test split and the gzip size ratio of the int8
   ``.tflite`` files (gzip -9, the same bytes a user ships).
3. Structured: ``edgekit prune trained --structured --ratio 0.3`` (thin), then
   ``edgekit finetune thin --teacher trained --temperature 4 --alpha 0.7 --epochs K
   --lr 1e-3 --schedule cosine --bn-momentum 0.9`` (thin_kd) and, for the comparison, ``edgekit finetune thin --epochs K`` with the same
   settings and no teacher (thin_ft). Figures: int8 latency of thin_kd against trained, both
   quantized the same way and timed side by side by edgekit's speed check (alternating
   rounds, lower of the per-round medians, TFLite XNNPACK, 1 and 2 threads); the top-1 drop
   of thin_kd (float and int8); and thin_kd minus thin_ft.
4. At --resolution the models are small enough that per-call overhead weighs on latency, so
   the two architectures (trained's spec and thin's, from their sidecars) are also built at
   --latency-resolution (224) by the zoo builder, quantized to int8 the same way and timed
   side by side. Channel counts do not depend on the resolution; these are latency-only
   models, their (random) weights are never scored.

Test accuracy is measured by ``edgekit profile MODEL --data fashion-mnist:test`` (the harness,
Keras or TFLite). Needs Debian's dataset-fashion-mnist (or $EDGEKIT_FASHION_MNIST).

    python benchmarks/prune_distill.py [--families mobilenet_v2,efficientnet_lite0]
        [--resolution 48 --epochs 6 --kd-epochs 3 --schedule cosine
         --out /tmp/edgekit-bench-prune]

The summary is prune_distill.json in --out; the log of every command is beside it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

from _util import cli, machine

TRAIN, TEST = "fashion-mnist:train", "fashion-mnist:test"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def step(out: Path, *args):
    """Run ``edgekit ARGS -o out --json`` unless ``out`` exists; return its sidecar."""
    if not out.exists():
        t = time.perf_counter()
        cli(*args, "-o", out, "--force", json_out=True)
        log(f"{out.name}: {time.perf_counter() - t:.0f} s")
    return json.loads(Path(str(out) + ".json").read_text())


def top1(model: Path) -> float:
    doc = cli("profile", model, "--data", TEST, "--runs", "3", "--warmup", "1", json_out=True)
    return round(doc["accuracy"]["top1"], 2)


def gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), 9, mtime=0))


def int8(model: Path) -> Path:
    out = model.with_name(model.stem + "_int8.tflite")
    step(out, "quantize", model, "--mode", "int8", "--calib", TRAIN, "--no-speed-check")
    return out


def _speed(thin: Path, trained: Path, threads: int) -> dict:
    """edgekit's speed check: alternating rounds, the lower of the per-round medians."""
    from edgekit.core.artifacts import open_artifact
    from edgekit.optimize.speed import compare_speed

    v = compare_speed(open_artifact(thin), open_artifact(trained), threads, rounds=3)
    return {"thin_ms": v["candidate_ms"], "trained_ms": v["baseline_ms"],
            "ratio": round(v["candidate_ms"] / v["baseline_ms"], 3), "runtime": v["runtime"],
            "measured_on": v["measured_on"]}


def _rebuild(model: Path, resolution: int) -> Path:
    """The architecture in ``model``'s sidecar, built at ``resolution`` (random weights)."""
    from dataclasses import replace

    from edgekit.models.build import build_model
    from edgekit.models.spec import spec_from_dict
    from edgekit.models.zoo import write_model

    out = model.with_name(f"{model.stem}_at{resolution}.keras")
    if not out.exists():
        meta = json.loads(Path(str(model) + ".json").read_text())
        spec = replace(spec_from_dict(meta["spec"]), resolution=resolution)
        write_model(build_model(spec), spec, out,
                    stage={"name": "benchmark.rebuild", "config": {"resolution": resolution}})
    return out


def family(name: str, args, d: Path) -> dict:
    r = args.resolution
    base = d / f"{name}_r{r}.keras"
    step(base, "zoo", "build", name, "--resolution", r, "--classes", 10)
    tag = f"{name}_r{r}_e{args.epochs}_{args.schedule}"
    trained = d / f"{tag}.keras"
    meta = step(trained, "finetune", base, "--data", TRAIN, "--epochs", args.epochs,
                "--bn-momentum", 0.9, "--lr", 3e-3, "--schedule", args.schedule,
                "--augment", "flip", "--patience", 3)
    res = {"train": {"epochs_run": meta["finetune"]["epochs_run"],
                     "seconds": meta["finetune"]["seconds"],
                     "val_accuracy": meta["finetune"]["best_val_accuracy"]}}
    acc = {"trained": top1(trained)}
    trained8 = int8(trained)
    acc["trained_int8"] = top1(trained8)

    sparse = d / f"{tag}_sparse50.keras"
    meta = step(sparse, "prune", trained, "--sparsity", 0.5, "--data", TRAIN, "--epochs", 2)
    sparse8 = int8(sparse)
    acc["sparse"], acc["sparse_int8"] = top1(sparse), top1(sparse8)
    res["unstructured"] = {
        "sparsity_pruned_layers": meta["pruning"]["pruned_layers_sparsity"],
        "drop_float": round(acc["trained"] - acc["sparse"], 2),
        "drop_int8": round(acc["trained_int8"] - acc["sparse_int8"], 2),
        "int8_tflite_gzip_bytes": {"dense": gz(trained8), "sparse": gz(sparse8)},
        "int8_gzip_ratio": round(gz(sparse8) / gz(trained8), 3),
        "fp32_gzip_ratio (prune's own report)": meta["pruning"]["tflite_fp32"]["gzip_ratio"]}

    thin = d / f"{tag}_thin30.keras"
    meta = step(thin, "prune", trained, "--structured", "--ratio", 0.3, "--data", TRAIN)
    kd = d / f"{tag}_thin30_kd{args.kd_epochs}.keras"
    ft = d / f"{tag}_thin30_ft{args.kd_epochs}.keras"
    same = ("--data", TRAIN, "--epochs", args.kd_epochs, "--lr", 1e-3, "--augment", "flip",
            "--schedule", args.schedule, "--bn-momentum", 0.9, "--patience", args.kd_epochs)
    kd_meta = step(kd, "finetune", thin, *same, "--teacher", trained, "--temperature", 4,
                   "--alpha", 0.7)
    step(ft, "finetune", thin, *same)
    kd8 = int8(kd)
    acc.update(thin=top1(thin), thin_kd=top1(kd), thin_ft=top1(ft), thin_kd_int8=top1(kd8))
    speed = {f"{t}_threads": _speed(kd8, trained8, t) for t in (1, 2)}
    big = args.latency_resolution
    speed_big = {f"{t}_threads": _speed(*(int8(_rebuild(m, big)) for m in (thin, trained)), t)
                 for t in (1, 2)}
    res["structured"] = {
        "macs": meta["pruning"]["macs"], "params": meta["pruning"]["params"],
        "val_accuracy_during_prune": meta["pruning"]["val_accuracy"],
        "kd_seconds": kd_meta["finetune"]["seconds"],
        "int8_latency": speed,
        f"int8_latency_at_{big}px (same architectures, latency only)": speed_big,
        "drop_float": round(acc["trained"] - acc["thin_kd"], 2),
        "drop_int8": round(acc["trained_int8"] - acc["thin_kd_int8"], 2),
        "kd_minus_plain_finetune": round(acc["thin_kd"] - acc["thin_ft"], 2)}
    res["test_top1"] = acc
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--families", default="mobilenet_v2,efficientnet_lite0")
    ap.add_argument("--resolution", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--kd-epochs", type=int, default=3)
    ap.add_argument("--schedule", default="cosine", help="finetune's --schedule for training")
    ap.add_argument("--latency-resolution", type=int, default=224)
    ap.add_argument("--out", type=Path, default=Path("/tmp/edgekit-bench-prune"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "prune_distill.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.update({"machine": machine(), "resolution": args.resolution, "epochs": args.epochs,
                    "kd_epochs": args.kd_epochs, "schedule": args.schedule})
    for name in args.families.split(","):
        log(f"{name} @ {args.resolution}x{args.resolution}")
        summary[name] = family(name, args, args.out)
        summary_path.write_text(json.dumps(summary, indent=2))
        json.dump(summary[name], sys.stdout, indent=2)
        print(flush=True)
    log(f"summary: {summary_path}")


if __name__ == "__main__":
    main()
