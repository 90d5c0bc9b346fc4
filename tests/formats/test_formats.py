"""Every input format loads into one Artifact type, every TFLite mode converts and runs, and
the local runner profiles .tflite, .onnx and .keras — all on the model trained on real data."""

from __future__ import annotations

import json

import pytest

from conftest import profile_json, run_cli

pytestmark = pytest.mark.slow
DATA = "fashion-mnist-sample:test"


def _profile(path, *extra):
    return profile_json(path, *extra)


@pytest.fixture(scope="module")
def float_acc(trained_keras):
    return _profile(trained_keras)["accuracy"]


@pytest.mark.parametrize("mode,extra,precision", [
    ("dynamic", [], "dynamic"),
    ("int16x8", ["--calib", "fashion-mnist-sample:train", "--calib-size", "50"], "int16x8"),
    ("int8", ["--calib", "fashion-mnist-sample:train", "--io", "uint8"], "int8"),
])
def test_tflite_modes_convert_run_and_stay_close(workdir, trained_keras, float_acc, mode, extra,
                                                 precision):
    out = workdir / f"modes_{mode}.tflite"
    run_cli("quantize", trained_keras, "--mode", mode, *extra, "--no-speed-check", "-o", out,
            "--force", check=True)
    info = json.loads(run_cli("inspect", out, "--json", check=True).stdout)
    assert info["precision"] == precision  # read back from the graph, not the sidecar
    r = _profile(out, "--reference", trained_keras)
    assert r["accuracy"]["subset"] == "300 of 1000, class-balanced"
    # 300 images: one image is 0.33 points. int16x8 and dynamic keep activations finer than int8.
    assert abs(r["accuracy"]["top1"] - float_acc["top1"]) <= 4.0
    assert r["fidelity"]["top1_agreement"] >= 80.0
    if mode == "int8":
        assert json.loads((workdir / "modes_int8.tflite.json").read_text())["input"]["dtype"] == "uint8"


def test_h5_and_savedmodel_sources(workdir, trained_keras):
    import keras

    model = keras.saving.load_model(trained_keras)
    h5 = workdir / "trained.h5"
    model.save(h5)
    saved = workdir / "trained_savedmodel"
    model.export(str(saved), verbose=False)
    for source in (h5, saved):
        info = json.loads(run_cli("inspect", source, "--json", check=True).stdout)
        assert info["params"] > 0
        out = workdir / f"from_{source.name}.tflite"
        run_cli("quantize", source, "--mode", "int8", "--calib", "fashion-mnist-sample:train",
                "--calib-size", "50", "--preprocessing", "tf", "--no-speed-check", "-o", out,
                "--force", check=True)
        assert json.loads(run_cli("inspect", out, "--json", check=True).stdout)["precision"] == "int8"


def test_onnx_profiled_by_onnxruntime(workdir, trained_keras, float_acc):
    import keras
    import tensorflow as tf
    import tf2onnx

    model = keras.saving.load_model(trained_keras)
    onnx_path = workdir / "trained.onnx"
    tf2onnx.convert.from_keras(model, input_signature=(tf.TensorSpec((None, 32, 32, 3), tf.float32,
                               name="input"),), opset=17, output_path=str(onnx_path))
    r = _profile(onnx_path, "--preprocessing", "tf", "--reference", trained_keras)
    assert r["provenance"]["runtime"] == "onnxruntime"
    assert r["model"]["format"] == "onnx"
    assert r["accuracy"]["top1"] == pytest.approx(float_acc["top1"], abs=0.34)  # float == float
    assert r["fidelity"]["snr_db"] is None or r["fidelity"]["snr_db"] > 60
    assert r["fidelity"]["top1_agreement"] >= 99.6


def test_profile_without_data_times_only(trained_fp32):
    proc = run_cli("profile", trained_fp32, "--runs", "3", "--warmup", "0", "--json", check=True)
    r = json.loads(proc.stdout)
    assert r["latency_ms"]["count"] == 3 and r["accuracy"] is None and r["fidelity"] is None
    assert r["model"]["precision"] == "fp32"


def test_reference_without_data_is_refused(workdir, trained_keras):
    proc = run_cli("profile", trained_keras, "--reference", trained_keras)
    assert proc.returncode == 2 and "--reference needs --data" in proc.stderr
