"""Models edgekit did not build: keras.applications MobileNetV2 ([-1, 1] input, nothing in the
graph), EfficientNetB0 and MobileNetV3Small (raw pixels, Rescaling/Normalization inside), each
with its own head, trained briefly on the sample and saved with no sidecar. edgekit must read
the preprocessing from each graph and quantize, profile and distil them correctly without any
flag; where it cannot tell, it must stop; and its checks must not vouch for broken models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import once, once_folder, run_cli
from user_models import KINDS, build, train

pytestmark = pytest.mark.slow
TEST = "fashion-mnist-sample:test"
SIZE = 32
# int8 top-1 against float on the 1,000 test images, points: MobileNetV2 quantizes well;
# hard-swish and squeeze-excite models lose more (the goals are 1 and 3 points on
# the benchmark's longer-trained models; these are trained for a minute).
MARGIN = {"mobilenet_v2": 3.0, "efficientnet_b0": 6.0, "mobilenet_v3_small": 6.0}
EXPECTED = {"mobilenet_v2": ("tf", "MobileNetV2 layout"),
            "efficientnet_b0": ("raw", "Rescaling 1/255, Normalization"),
            "mobilenet_v3_small": ("raw", "Rescaling 1/127.5 offset -1")}


@pytest.fixture(scope="session")
def user_models(shared):
    """kind -> trained model path (no sidecar)."""
    out = {}
    for kind in KINDS:
        path = shared / f"user_{kind}.keras"
        with once(path) as todo:
            if todo:
                train(kind, path, size=SIZE)
        out[kind] = path
    return out


@pytest.fixture(scope="session")
def photos(shared):
    """A flat folder of 200 unlabelled PNG images: a calibration set as users have it."""
    from PIL import Image

    from edgekit.data import load_dataset

    def fill(part):
        ds = load_dataset("fashion-mnist-sample:train")
        for i in range(0, len(ds), 10):
            Image.fromarray(ds.images(i)).save(part / f"img_{i:04d}.png")

    return once_folder(shared / "photos", fill)


def _json(*args) -> dict:
    return json.loads(run_cli(*args, "--json", check=True).stdout)


def test_inspect_reads_the_preprocessing_from_the_graph(user_models):
    for kind, path in user_models.items():
        prep = _json("inspect", path)["preprocessing"]
        name, how = EXPECTED[kind]
        assert prep["name"] == name and how in prep["decided_by"], (kind, prep)


@pytest.mark.parametrize("kind", list(KINDS))
def test_int8_keeps_accuracy_with_no_flags(kind, user_models, photos, workdir):
    """quantize with a flat calibration folder, then profile against the float model: both
    sides fed what they expect, decided from the graph, and the int8 model near float."""
    model, out = user_models[kind], workdir / f"user_{kind}_int8.tflite"
    run_cli("quantize", model, "--mode", "int8", "--calib", photos, "--no-speed-check",
            "-o", out, check=True)
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["preprocessing"]["name"] == EXPECTED[kind][0]
    assert EXPECTED[kind][1] in side["preprocessing"]["decided_by"]
    r = _json("profile", out, "--data", TEST, "--reference", model, "--runs", "3",
              "--warmup", "1", "--threads", "1")
    assert r["model"]["preprocessing"]["name"] == EXPECTED[kind][0]
    assert r["fidelity"]["reference_preprocessing"]["name"] == EXPECTED[kind][0]
    float_top1, int8_top1 = r["reference_accuracy"]["top1"], r["accuracy"]["top1"]
    assert float_top1 > 40, "the model should be trained far above chance"
    assert r["fidelity"]["meaningful"] and not r["accuracy"]["degenerate"]
    assert float_top1 - int8_top1 <= MARGIN[kind], (float_top1, int8_top1)


def test_unknown_preprocessing_stops_and_names_the_flag(workdir):
    """A model with nothing at its input and no known layout: commands that feed it real
    images stop (exit 2) and say how to state it; inspect says unknown; the flag works."""
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3)(inputs))
    path = workdir / "mystery.keras"
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(path)
    prep = _json("inspect", path)["preprocessing"]
    assert prep["name"] == "unknown" and "Rescaling" in prep["why"]
    for args in (("quantize", path, "--mode", "int8", "--calib", "fashion-mnist-sample:train",
                  "-o", workdir / "m.tflite"),
                 ("profile", path, "--data", TEST, "--limit", "20"),
                 ("finetune", path, "--data", "fashion-mnist-sample:train", "-o",
                  workdir / "m_ft.keras"),
                 ("predict", path, __file__)):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "input range it expects is unknown" in proc.stderr
        assert "--preprocessing tf|torch|unit|raw" in proc.stderr
        assert "Traceback" not in proc.stderr and not (workdir / "m.tflite").exists()
    run_cli("quantize", path, "--mode", "fp16", "-o", workdir / "m_fp16.tflite", check=True)
    r = _json("profile", path, "--data", TEST, "--limit", "50", "--runs", "2",
              "--preprocessing", "unit")
    assert r["model"]["preprocessing"]["decided_by"] == "--preprocessing unit"


def test_degenerate_reference_is_not_a_pass(user_models, workdir):
    """An untrained reference gives every image one class: profile flags the fidelity as not
    meaningful, and compare fails on the result even against itself."""
    ref = workdir / "untrained_mnv2.keras"
    build("mobilenet_v2", SIZE, seed=1).save(ref)
    out = workdir / "deg.json"
    proc = run_cli("profile", user_models["mobilenet_v2"], "--data", TEST, "--reference", ref,
                   "--runs", "2", "--warmup", "1", "-o", out, check=True)
    assert "NOT MEANINGFUL" in proc.stderr
    r = json.loads(out.read_text())
    assert r["fidelity"]["meaningful"] is False
    assert "reference" in r["fidelity"]["degenerate"] and "model" not in r["fidelity"]["degenerate"]
    proc = run_cli("compare", out, out, "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and "usable outputs" in doc["regressions"]


def test_distillation_reads_the_teacher_preprocessing_from_its_graph(user_models, workdir):
    """A [-1, 1] student distilled from a raw-pixel teacher: each fed its own range."""
    out = workdir / "student_kd.keras"
    run_cli("finetune", user_models["mobilenet_v2"], "--teacher", user_models["efficientnet_b0"],
            "--data", "fashion-mnist-sample:train", "--limit", "400", "--epochs", "1",
            "-o", out, check=True)
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["preprocessing"]["name"] == "tf"
    teacher = side["stage"]["config"]["teacher"]
    assert teacher["preprocessing"]["name"] == "raw"
    assert "Normalization" in teacher["preprocessing"]["decided_by"]


def test_degenerate_outputs_unit():
    """Each degenerate case is caught, and a working model's outputs are not."""
    from edgekit.measure import degenerate, fidelity

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 30)
    good = np.eye(10)[labels] * 0.6 + rng.random((300, 10)) * 0.5
    assert degenerate(good, labels) == []
    constant = np.tile(rng.random(10), (300, 1))
    assert any("do not change" in r for r in degenerate(constant))
    one_class = rng.random((300, 10)) * 0.1
    one_class[:, 3] += 1
    assert any("class 3" in r for r in degenerate(one_class, labels))
    chance = rng.random((300, 10))
    assert any("at chance" in r for r in degenerate(chance, labels))
    f = fidelity(constant, constant, labels)
    assert f["top1_agreement"] == 100.0 and f["meaningful"] is False
    assert fidelity(good, good, labels)["meaningful"] is True


# --- an ONNX model exported from PyTorch, with a dynamic input size --------------------------


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


def test_scale_from_a_model_edgekit_did_not_build(user_models, workdir):
    """--from a keras.applications model: the family must be given; no zoo layer matches its
    names, and the output says so and that the scaled model starts from random weights."""
    out = workdir / "scaled_from_user.keras"
    base = ("scale", "--device", "raspberry-pi-4", "--from", user_models["mobilenet_v2"],
            "--latency-ms", "100", "-o", out)
    proc = run_cli(*base)
    assert proc.returncode == 2 and "--family" in proc.stderr and not out.exists()
    doc = _json(*base, "--family", "mobilenet_v2", "--classes", "10")
    said = doc["output"]["inherited"]
    assert said.startswith("0/") and "not inherited" in said and "random weights" in said
    assert out.exists()
