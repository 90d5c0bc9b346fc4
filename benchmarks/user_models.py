"""Models users bring, through edgekit with no flags: keras.applications MobileNetV2 ([-1, 1]
input), EfficientNetB0 and MobileNetV3Small (raw pixels, preprocessing inside the graph), each
with its own head, and a torchvision-style MobileNetV2 exported to ONNX from PyTorch with
dynamic H/W and its normalisation inside the graph. Each is trained on the Fashion-MNIST sample
(2,000 images), saved with no sidecar, quantized to int8 with a flat folder of 200 unlabelled
images, and profiled against its float model on the 1,000-image sample test split.

Prints one row per model: the preprocessing edgekit inferred (and from what), float and int8
top-1, top-1 agreement, and int8/fp32 latency at 1 thread measured side by side in this run
(the float model converted by edgekit to the same runtime: .tflite for Keras, the ONNX itself).
Goal (issue 20): int8 within 1 point of float for MobileNetV2, within 3 for the others.

    python benchmarks/user_models.py [--size 64] [--epochs 6] [--out DIR]

About 15 minutes on 2 cores at the defaults.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from user_models import KINDS, torch_onnx, train  # noqa: E402  (the tests' model makers)

TEST = "fashion-mnist-sample:test"


def edgekit(*args) -> dict:
    proc = subprocess.run([sys.executable, "-m", "edgekit", *map(str, args), "--json"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"edgekit {' '.join(map(str, args))}: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)


def photos(folder: Path) -> Path:
    from PIL import Image

    from edgekit.core.data import load_dataset

    folder.mkdir(exist_ok=True)
    ds = load_dataset("fashion-mnist-sample:train")
    for i in range(0, len(ds), 10):
        Image.fromarray(ds.images(i)).save(folder / f"img_{i:04d}.png")
    return folder


def row(name: str, model: Path, float_runtime: Path, calib: Path, out: Path, size: int) -> dict:
    suffix = ".onnx" if model.suffix == ".onnx" else ".tflite"
    q = out / f"{model.stem}_int8{suffix}"
    sized = ["--input-size", str(size)] if model.suffix == ".onnx" else []
    edgekit("quantize", model, "--mode", "int8", "--calib", calib, *sized, "--no-speed-check",
            "-o", q, "--force")
    r = edgekit("profile", q, "--data", TEST, "--reference", model, "--threads", "1",
                "--runs", "200", "--warmup", "20")
    f = edgekit("profile", float_runtime, "--threads", "1", "--runs", "200", "--warmup", "20",
                *sized)
    q2 = edgekit("profile", q, "--threads", "1", "--runs", "200", "--warmup", "20")
    prep = r["model"]["preprocessing"]
    return {"model": name, "preprocessing": f"{prep['name']} ({prep['decided_by']})",
            "float_top1": r["reference_accuracy"]["top1"], "int8_top1": r["accuracy"]["top1"],
            "agreement": r["fidelity"]["top1_agreement"],
            "meaningful": r["fidelity"]["meaningful"],
            "fp32_ms": f["latency_ms"]["p50"], "int8_ms": q2["latency_ms"]["p50"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or Path(tempfile.mkdtemp(prefix="edgekit-user-models-"))
    out.mkdir(parents=True, exist_ok=True)
    calib = photos(out / "photos")
    rows = []
    for kind in KINDS:
        model = train(kind, out / f"{kind}.keras", size=a.size, epochs=a.epochs)
        fp32 = out / f"{kind}_fp32.tflite"
        edgekit("export", model, "--format", "tflite", "-o", fp32, "--force")
        rows.append(row(f"keras {kind}", model, fp32, calib, out, a.size))
        print(rows[-1], flush=True)
    onnx = torch_onnx(out, size=a.size, epochs=a.epochs)["inside"]
    rows.append(row("torch mobilenet_v2 0.5 (ONNX)", onnx, onnx, calib, out, a.size))
    print(f"\n{a.size}x{a.size}, trained {a.epochs} epochs on the 2,000-image sample; top-1 on "
          f"its 1,000 test images; latency p50 at 1 thread, 200 runs, this machine\n")
    print("| model | preprocessing inferred | float top-1 | int8 top-1 | drop | agreement | "
          "int8/fp32 latency |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['preprocessing']} | {r['float_top1']:.1f}% | "
              f"{r['int8_top1']:.1f}% | {r['float_top1'] - r['int8_top1']:.1f} | "
              f"{r['agreement']:.1f}% | {r['int8_ms']:.3f} / {r['fp32_ms']:.3f} ms = "
              f"{r['int8_ms'] / r['fp32_ms']:.2f} |")


if __name__ == "__main__":
    main()
