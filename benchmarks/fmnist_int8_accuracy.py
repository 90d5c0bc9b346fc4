"""fp32 vs int8 top-1 on the full 10,000-image Fashion-MNIST test split (goal: drop under
0.5 points), for a MobileNetV2 trained on the full train split for a few epochs on CPU.

Needs Debian's dataset-fashion-mnist (or $EDGEKIT_FASHION_MNIST).
    python benchmarks/fmnist_int8_accuracy.py [--epochs 5 --width 0.5 --resolution 32]
"""

import argparse
import os
import time

from _util import cli, machine, out_dir

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--resolution", type=int, default=32)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    from edgekit.core.artifacts import child_meta, open_artifact, write_sidecar
    from edgekit.core.data import load_dataset, to_model_input

    d = out_dir("fmnist")
    base = d / "mnv2.keras"
    cli("zoo", "build", "mobilenet_v2", "--width", args.width, "--resolution", args.resolution,
        "--classes", 10, "--dropout", 0.1, "-o", base, "--force")
    parent = open_artifact(base)
    train = load_dataset("fashion-mnist:train")
    r = args.resolution
    x = to_model_input(np.concatenate([b for b, _ in train.batches(2000, r, r, 3)]),
                       parent.preprocessing)
    model = keras.saving.load_model(base)
    for layer in model.layers:  # reference momentum 0.999 is too slow for a few epochs
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.99
    keras.utils.set_random_seed(0)
    steps = args.epochs * int(np.ceil(len(x) / 128))
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(3e-3, steps)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t = time.perf_counter()
    model.fit(x, train.labels, epochs=args.epochs, batch_size=128, verbose=2)
    train_s = time.perf_counter() - t
    trained = d / "mnv2_trained.keras"
    if trained.exists():
        trained.unlink()
    model.save(trained)
    write_sidecar(trained, child_meta(parent, "train", {"epochs": args.epochs}, format="keras",
                                      precision="fp32", labels=train.class_names,
                                      input=parent.meta["input"]))
    int8 = d / "mnv2_int8.tflite"
    cli("quantize", trained, "--mode", "int8", "--calib", "fashion-mnist:train", "-o", int8, "--force")
    fp32 = d / "mnv2_fp32.tflite"
    cli("export", trained, "-o", fp32, "--force")
    res = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        res[name] = cli("profile", path, "--data", "fashion-mnist:test", "--runs", 20,
                        *(["--reference", fp32] if name == "int8" else []), json_out=True)
    a32, a8 = res["fp32"]["accuracy"]["top1"], res["int8"]["accuracy"]["top1"]
    f = res["int8"]["fidelity"]
    print(f"machine: {machine()}; MobileNetV2 width {args.width} @ {r}x{r}, {args.epochs} epochs "
          f"on 60,000 images in {train_s:.0f} s")
    print(f"fp32 TFLite top-1 {a32:.2f}%  int8 TFLite top-1 {a8:.2f}%  (n={res['int8']['accuracy']['n']})")
    print(f"drop {a32 - a8:.2f} points (goal < 0.5); int8 vs fp32 top-1 agreement "
          f"{f['top1_agreement']:.2f}%, SNR {f['snr_db']:.1f} dB")
