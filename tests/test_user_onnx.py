"""Models edgekit did not build, continued: a torchvision-style MobileNetV2 trained here with
PyTorch and exported by ``torch.onnx.export`` with a dynamic height and width (with its
normalisation inside the graph, and without), and a model whose output is not class scores.
Split from test_user_models.py so the two files run on different test workers."""

from __future__ import annotations

import json

import pytest

from conftest import once_folder, run_cli

pytestmark = pytest.mark.slow
TEST = "fashion-mnist-sample:test"
SIZE = 32


def _json(*args) -> dict:
    return json.loads(run_cli(*args, "--json", check=True).stdout)


@pytest.fixture(scope="session")
def torch_models(shared):
    """{"inside": ONNX with the normalisation in its graph, "outside": without}."""
    pytest.importorskip("torch")
    from user_models import torch_onnx

    folder = once_folder(shared / "torch_onnx", lambda part: torch_onnx(part, size=SIZE))
    return {k: folder / f"torch_mnv2_{k}.onnx" for k in ("inside", "outside")}


def test_torch_onnx_inspect_needs_the_input_size(torch_models):
    """MACs are never counted with the dynamic dims read as 1; with --input-size they are,
    and they grow with the square of the size."""
    path = torch_models["inside"]
    info = _json("inspect", path)
    assert info["inputs"][0]["shape"] == [None, 3, None, None] and info["macs"] is None
    assert any("dynamic size" in n for n in info["notes"])
    assert info["preprocessing"]["name"] == "raw"  # x / 255 - mean) / std inside the graph
    small, big = (_json("inspect", path, "--input-size", s)["macs"] for s in ("32", "1x3x64x64"))
    assert small > 1e6 and big / small == pytest.approx(4, rel=0.05)
    unknown = _json("inspect", torch_models["outside"])["preprocessing"]
    assert unknown["name"] == "unknown"


@pytest.mark.parametrize("engine", ["ort", "nncf"])
def test_torch_onnx_quantizes_to_onnx_int8(engine, torch_models, photos, workdir):
    path, out = torch_models["inside"], workdir / f"torch_{engine}_int8.onnx"
    proc = run_cli("quantize", path, "--mode", "int8", "--calib", photos, "-o", out)
    assert proc.returncode == 2 and "--input-size" in proc.stderr and not out.exists()
    doc = json.loads(run_cli("quantize", path, "--mode", "int8", "--engine", engine, "--calib",
                             photos, "--input-size", str(SIZE), "--no-speed-check", "-o", out,
                             "--json", check=True).stdout)
    assert doc["input"]["shape"] == [None, 3, SIZE, SIZE] and doc["input_size"] == [SIZE, SIZE]
    assert doc["preprocessing"]["name"] == "raw" and doc["fidelity_on_calibration"]["meaningful"]
    r = _json("profile", out, "--data", TEST, "--reference", path, "--runs", "3",
              "--warmup", "1", "--threads", "1")
    assert r["reference_accuracy"]["top1"] > 40 and r["fidelity"]["meaningful"]
    assert r["reference_accuracy"]["top1"] - r["accuracy"]["top1"] <= 5.0


def test_torch_onnx_max_drop_and_stated_preprocessing(torch_models, photos, workdir):
    """The ONNX without its normalisation needs --preprocessing torch; then the accuracy-
    aware search runs on it like on a Keras model."""
    path, out = torch_models["outside"], workdir / "torch_outside_md.onnx"
    args = ("quantize", path, "--mode", "int8", "--calib", photos, "--input-size", str(SIZE),
            "--data", TEST, "--max-drop", "1", "-o", out)
    proc = run_cli(*args)
    assert proc.returncode == 2 and "--preprocessing" in proc.stderr
    doc = json.loads(run_cli(*args, "--preprocessing", "torch", "--json", check=True).stdout)
    acc = doc["accuracy_aware"]
    assert acc["met"] and acc["drop"] <= 1.0 and acc["float_top1"] > 40
    assert doc["preprocessing"]["decided_by"] == "--preprocessing torch"


def test_detector_shaped_output_is_not_classified(photos, workdir):
    """A model whose output is boxes ([N, 256, 16]), not class scores: predict shows the
    tensor's shape and statistics, and profile measures fidelity without top-1."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Reshape((256, 16))(keras.layers.Conv2D(16, 3, padding="same")(x))
    path = workdir / "detector.keras"
    keras.Model(inputs, x).save(path)
    image = sorted(photos.iterdir())[0]
    doc = _json("predict", path, image)
    assert doc["predictions"] is None and doc["outputs"]["shape"] == [256, 16]
    assert doc["tensors"][0]["std"] > 0
    q = workdir / "detector_int8.tflite"
    run_cli("quantize", path, "--mode", "int8", "--calib", photos, "--no-speed-check", "-o", q,
            check=True)
    r = _json("profile", q, "--data", TEST, "--limit", "100", "--reference", path, "--runs", "2")
    assert r["outputs"]["class_scores"] is False and r.get("accuracy") is None
    assert "predictions" not in r and r["fidelity"]["top1_agreement"] is None
    assert r["fidelity"]["snr_db"] > 15 and r["fidelity"]["meaningful"]
