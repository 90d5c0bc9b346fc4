"""Time of `edgekit quantize --mode int8` divided by the time of calling TFLiteConverter
directly on the same model and the same calibration samples (goal: under 1.1).

Both sides run as fresh processes (Python + TensorFlow import included) and convert the same
.keras file through the same route (model.export -> from_saved_model); the direct script
gets the calibration samples pre-made in an .npy, so edgekit's extra work — reading the
dataset, sampling, preprocessing, sidecar, hashing, atomic write — is what the ratio shows.
Median of 3 alternating runs.
"""

import subprocess
import sys
import textwrap
import time

import numpy as np

from _util import EDGEKIT, cli, machine, median, out_dir

DIRECT = textwrap.dedent("""
    import os, sys, tempfile
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np, keras, tensorflow as tf
    model = keras.saving.load_model(sys.argv[1], compile=False)
    samples = np.load(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in samples)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
        data = conv.convert()
    open(sys.argv[3], "wb").write(data)
""")

if __name__ == "__main__":
    sys.path.insert(0, ".")
    from edgekit.core.artifacts import open_artifact
    from edgekit.optimize.quantize import calibration_batches

    d = out_dir("quantize_overhead")
    model = d / "mobilenet_v2.keras"
    cli("zoo", "build", "mobilenet_v2", "-o", model, "--force")
    src = open_artifact(model)
    np.save(d / "calib.npy", calibration_batches(src, "fashion-mnist-sample:train", 200, (224, 224, 3)))
    (d / "direct.py").write_text(DIRECT)
    ours, direct = [], []
    for i in range(3):
        t = time.perf_counter()
        subprocess.run([*EDGEKIT, "quantize", str(model), "--mode", "int8", "--calib",
                        "fashion-mnist-sample:train", "-o", str(d / "ours.tflite"), "--force"],
                       check=True, capture_output=True)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([sys.executable, str(d / "direct.py"), str(model), str(d / "calib.npy"),
                        str(d / "direct.tflite")], check=True, capture_output=True)
        direct.append(time.perf_counter() - t)
    same = (d / "ours.tflite").read_bytes() == (d / "direct.tflite").read_bytes()
    print(f"machine: {machine()}; MobileNetV2 1.0@224, int8, 200 calibration images")
    print(f"edgekit quantize: median {median(ours):.2f} s {['%.2f' % t for t in ours]}")
    print(f"direct TFLiteConverter: median {median(direct):.2f} s {['%.2f' % t for t in direct]}")
    print(f"ratio {median(ours) / median(direct):.3f} (goal < 1.1); byte-identical output: {same}")
