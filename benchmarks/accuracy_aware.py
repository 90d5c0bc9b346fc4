"""Accuracy-aware quantization on a Fashion-MNIST-trained EfficientNet-B0 (squeeze-excite, the
hard case for int8): top-1 drop of plain int8 against edgekit's drop under ``--max-drop 0.5``,
and the latency cost of the layers it keeps in float, for TFLite and for ONNX.

1. ``edgekit zoo build efficientnet_b0`` (default width 0.5 @ 32x32, 10 classes), trained on
   CPU on a class-balanced subset of the Fashion-MNIST train split for a few epochs, as
   tests/conftest.py trains (Adam, BN momentum 0.9; here with a cosine-decayed rate); the
   sidecar (child_meta/write_sidecar) carries preprocessing and labels. Cached in the output
   folder and reused while the training settings are the same (--retrain to redo it).
2. ``edgekit profile B0.keras --data TEST`` for the float top-1 (Keras in the harness); then
   per format, the real CLI in child processes:
   - ``edgekit quantize B0.keras --mode int8 --calib fashion-mnist:train -o plain --json``,
     then ``edgekit profile plain --data TEST --json`` for its top-1 (plain int8);
   - ``edgekit quantize B0.keras --mode int8 --calib fashion-mnist:train --data TEST
     --max-drop 0.5 -o aa --json``; exit 1 means the limit was not met (the best model is
     still written; its sidecar is read then). Its ``accuracy_aware`` record gives the float
     top-1 (Keras, same harness), the quantized top-1, the layers kept in float and their
     latency cost against the fully int8 model, timed side by side (1 thread by default).
   TEST is the full 10,000-image test split, or with ``--test-size N`` (N >= 2,000) a
   class-balanced subset of it written as an .npz.

Needs Debian's dataset-fashion-mnist (or $EDGEKIT_FASHION_MNIST).
    python benchmarks/accuracy_aware.py [--width 0.5 --resolution 32 --train-size 60000
                                         --epochs 4 --test-size 10000 --max-drop 0.5]

Everything (models, CLI JSON, the summary) goes to --out (default /tmp/edgekit-bench-aa);
the summary is accuracy_aware.json there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _util import EDGEKIT, machine

FAMILY = "efficientnet_b0"
SUFFIX = {"tflite": ".tflite", "onnx": ".onnx"}


def run(*args, ok=(0,)) -> tuple[subprocess.CompletedProcess, float]:
    """Run the real CLI; exit with its stderr on an unexpected exit code."""
    cmd = [*EDGEKIT, *map(str, args)]
    print("$ edgekit " + " ".join(map(str, args)), flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    dt = time.perf_counter() - t
    if proc.returncode not in ok:
        sys.exit(f"edgekit {' '.join(map(str, args))} exited {proc.returncode}:\n"
                 f"{proc.stderr[-3000:]}")
    return proc, dt


def train(args, d: Path) -> tuple[Path, dict]:
    """The trained Keras model (cached) and how it was trained."""
    from edgekit.core.artifacts import child_meta, open_artifact, write_sidecar

    config = {"family": FAMILY, "width": args.width, "resolution": args.resolution,
              "train_size": args.train_size, "epochs": args.epochs, "batch_size": 128,
              "lr": 3e-3, "schedule": "cosine", "bn_momentum": 0.9, "dropout": 0.1,
              "seed": args.seed, "data": "fashion-mnist:train"}
    trained = d / f"b0_w{args.width:g}_r{args.resolution}_trained.keras"
    if trained.exists() and not args.retrain:
        art = open_artifact(trained)
        if art.meta.get("stage", {}).get("config", {}).get("model") == config:
            print(f"reusing {trained}", flush=True)
            return trained, art.meta["stage"]["config"]

    import keras
    import numpy as np

    from edgekit.core.data import load_dataset, sample_indices, to_model_input

    base = d / f"b0_w{args.width:g}_r{args.resolution}.keras"
    run("zoo", "build", FAMILY, "--width", args.width, "--resolution", args.resolution,
        "--classes", 10, "--dropout", 0.1, "--seed", args.seed, "-o", base, "--force")
    parent = open_artifact(base)
    data = load_dataset("fashion-mnist:train")
    n = min(args.train_size, len(data))
    idx = np.sort(sample_indices(len(data), n, seed=args.seed, labels=data.labels))
    r = args.resolution
    x = to_model_input(np.concatenate([b for b, _ in data.batches(2000, r, r, 3, indices=idx)]),
                       parent.preprocessing)
    y = data.labels[idx]
    model = keras.saving.load_model(base)
    # The zoo keeps the reference BN momentum (0.99 for EfficientNet); a few epochs on CPU
    # need faster moving statistics, as in tests/conftest.py.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    keras.utils.set_random_seed(args.seed)
    steps = args.epochs * int(np.ceil(n / 128))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    print(f"training {FAMILY} width {args.width} @ {r}x{r} on {n} images, {args.epochs} epochs",
          flush=True)
    t = time.perf_counter()
    hist = model.fit(x, y, epochs=args.epochs, batch_size=128, verbose=2)
    train_s = time.perf_counter() - t
    if trained.exists():
        trained.unlink()
    model.save(trained)
    info = {"model": config, "train_s": round(train_s, 1),
            "train_accuracy": round(100 * float(hist.history["accuracy"][-1]), 2)}
    write_sidecar(trained, child_meta(parent, "train", info, format="keras", precision="fp32",
                                      labels=data.class_names,
                                      **{k: parent.meta[k] for k in ("input", "output")}))
    return trained, info


def test_set(args, d: Path) -> tuple[str, int]:
    """The --data argument for evaluation and its size."""
    import numpy as np

    from edgekit.core.data import load_dataset, sample_indices

    full = load_dataset("fashion-mnist:test")
    if args.test_size >= len(full):
        return "fashion-mnist:test", len(full)
    idx = np.sort(sample_indices(len(full), args.test_size, seed=0, labels=full.labels))
    path = d / f"fmnist_test_{args.test_size}.npz"
    np.savez(path, x=full.images(idx), y=full.labels[idx], class_names=np.array(full.class_names))
    return str(path), args.test_size


def tries_log(stderr: str) -> list[dict]:
    """The accuracy-aware search's tries, from its INFO lines."""
    import re

    pat = re.compile(r"(\d+) layer\(s\) in float: top-1 ([\d.]+)% \(drop (-?[\d.]+) pt\)")
    return [{"float_layers": int(m[1]), "top1": float(m[2]), "drop": float(m[3])}
            for m in pat.finditer(stderr)]


def error_message(stderr: str) -> str:
    """The CLI's ``error: ...`` message (rich may wrap it over several lines)."""
    lines = stderr.strip().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("error:")), len(lines) - 1)
    return " ".join(l.strip() for l in lines[start:]) if lines else "(no output)"


def one_format(fmt: str, model: Path, data: str, d: Path, args) -> dict:
    stem = model.stem.replace("_trained", "")
    common = ["--mode", "int8", "--format", fmt, "--calib", "fashion-mnist:train",
              "--threads", args.threads, "--force", "--json"]
    plain = d / f"{stem}_int8{SUFFIX[fmt]}"
    proc, plain_s = run("quantize", model, *common, "-o", plain)
    plain_doc = json.loads(proc.stdout)
    proc, _ = run("profile", plain, "--data", data, "--runs", 20, "--threads", args.threads,
                  "--json")
    prof = json.loads(proc.stdout)
    aa = d / f"{stem}_aa{SUFFIX[fmt]}"
    sidecar = Path(str(aa) + ".json")
    if sidecar.exists():
        sidecar.unlink()  # so that a failed run cannot be read from an earlier one's sidecar
    proc, aa_s = run("quantize", model, *common, "--data", data, "--max-drop", args.max_drop,
                     "-o", aa, ok=(0, 1, 2, 3))
    record = error = speed = None
    if proc.returncode == 0:
        doc = json.loads(proc.stdout)
        record, speed = doc["accuracy_aware"], doc.get("speed_check")
    elif proc.returncode == 1 and sidecar.exists():
        # limit not met: no JSON on stdout, but the best model and its sidecar are written
        doc = json.loads(sidecar.read_text())
        record, speed = doc["accuracy_aware"], doc.get("speed_check")
    else:  # edgekit itself failed: report it, go on with the next format
        error = error_message(proc.stderr)
    return {"format": fmt, "plain": {"path": str(plain), "quantize_s": round(plain_s, 1),
                                     "top1": prof["accuracy"]["top1"], "n": prof["accuracy"]["n"],
                                     "speed_check": plain_doc.get("speed_check")},
            "accuracy_aware": {"path": str(aa), "quantize_s": round(aa_s, 1),
                               "exit_code": proc.returncode, "error": error,
                               "tries_log": tries_log(proc.stderr),
                               "message": error_message(proc.stderr) if proc.returncode else None,
                               "record": record, "speed_check": speed}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--train-size", type=int, default=60000, help="train images (class-balanced)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retrain", action="store_true", help="ignore the cached trained model")
    ap.add_argument("--test-size", type=int, default=10000,
                    help="evaluation images, >= 2000 (10000: the whole test split)")
    ap.add_argument("--max-drop", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1, help="threads of the latency checks")
    ap.add_argument("--formats", nargs="+", default=["tflite", "onnx"], choices=list(SUFFIX))
    ap.add_argument("--out", type=Path, default=Path("/tmp/edgekit-bench-aa"))
    args = ap.parse_args()
    if args.test_size < 2000:
        ap.error("--test-size must be at least 2000")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")

    model, info = train(args, args.out)
    data, n_test = test_set(args, args.out)
    proc, _ = run("profile", model, "--data", data, "--runs", 5, "--json")
    float_top1 = json.loads(proc.stdout)["accuracy"]["top1"]  # Keras, the same harness
    rows = [one_format(fmt, model, data, args.out, args) for fmt in args.formats]
    ended = time.strftime("%Y-%m-%d %H:%M:%S %Z")

    cfg = info["model"]
    print()
    print(f"machine: {machine()}")
    print(f"{FAMILY} width {cfg['width']} @ {cfg['resolution']}x{cfg['resolution']}, trained on "
          f"{cfg['train_size']} Fashion-MNIST train images for {cfg['epochs']} epochs in "
          f"{info['train_s']:.0f} s (train accuracy {info['train_accuracy']:.2f}%)")
    print(f"top-1 on {data} ({n_test} images); calibration: 200 class-balanced train images; "
          f"--max-drop {args.max_drop}; latency on {args.threads} thread(s); "
          f"{started} -> {ended}")
    print(f"float Keras top-1 (edgekit profile): {float_top1:.2f}%; 'drop' = float - int8 "
          "top-1 in points")
    print(f"{'format':<8}{'float':>8}{'int8':>8}{'drop':>7}{'edgekit':>9}{'drop':>7}{'met':>5}"
          f"{'float layers':>14}{'tries':>7}{'mixed ms':>10}{'int8 ms':>9}{'slowdown':>10}")
    for row in rows:
        a, p = row["accuracy_aware"]["record"], row["plain"]
        if a is None:  # edgekit failed: the float top-1 is not known either
            print(f"{row['format']:<8}{float_top1:>8.2f}{p['top1']:>8.2f}"
                  f"{float_top1 - p['top1']:>7.2f}  accuracy-aware run failed "
                  f"(exit {row['accuracy_aware']['exit_code']}), see below")
            continue
        cost = a.get("latency_cost")
        cost_s = (f"{cost['mixed_ms']:>10.3f}{cost['int8_ms']:>9.3f}{cost['slowdown']:>10.2f}"
                  if cost else f"{'-':>10}{'-':>9}{'-':>10}")
        print(f"{row['format']:<8}{float_top1:>8.2f}{p['top1']:>8.2f}"
              f"{float_top1 - p['top1']:>7.2f}{a['top1']:>9.2f}{a['drop']:>7.2f}"
              f"{'yes' if a['met'] else 'NO':>5}{len(a['float_layers']):>14}{a['tries']:>7}{cost_s}")
    for row in rows:
        a, p, aa = row["accuracy_aware"]["record"], row["plain"], row["accuracy_aware"]
        print(f"\n{row['format']}: plain int8 {p['path']} (quantize {p['quantize_s']:.0f} s); "
              f"accuracy-aware {aa['path']} (quantize {aa['quantize_s']:.0f} s, exit "
              f"{aa['exit_code']})")
        print("  tries: " + ", ".join(f"{t['float_layers']} in float -> {t['top1']:.2f}% "
                                      f"(drop {t['drop']:.2f})" for t in aa["tries_log"]))
        if aa["error"]:
            print(f"  edgekit failed: {aa['error']}")
        if a and abs(a["float_top1"] - float_top1) > 1e-9:
            print(f"  note: the accuracy-aware run measured float top-1 {a['float_top1']:.2f}%")
        if a and abs(a["int8_top1"] - p["top1"]) > 1e-9:
            print(f"  note: the accuracy-aware run's own plain int8 try scored "
                  f"{a['int8_top1']:.2f}%, the separate plain run {p['top1']:.2f}%")
        for what, sc in (("plain int8", p["speed_check"]), ("accuracy-aware", aa["speed_check"])):
            if sc:
                print(f"  {what} vs float: {sc['candidate_ms']:.3f} ms vs {sc['baseline_ms']:.3f} ms "
                      f"({sc['speedup']:.2f}x, {sc['runtime']})")
        if a and a["float_layers"]:
            print(f"  kept in float: {', '.join(a['float_layers'])}")
        if a and not a["met"]:
            print(f"  limit not met: {aa['message']}")
    doc = {"benchmark": "accuracy_aware", "machine": machine(), "started": started,
           "ended": ended, "training": info, "model": str(model), "data": data,
           "float_top1": float_top1,
           "n_test": n_test, "max_drop": args.max_drop, "threads": args.threads, "results": rows}
    path = args.out / "accuracy_aware.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nraw figures: {path}")


if __name__ == "__main__":
    main()
