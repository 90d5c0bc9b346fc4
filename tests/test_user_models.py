"""Models edgekit did not build: keras.applications MobileNetV2 ([-1, 1] input, nothing in the
graph), EfficientNetB0 and MobileNetV3Small (raw pixels, Rescaling/Normalization inside), each
with its own head, trained briefly on the sample and saved with no sidecar. edgekit must read
the preprocessing from each graph and quantize, profile and distil them correctly without any
flag; where it cannot tell, it must stop; and its checks must not vouch for broken models."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import invoke_cli, once, run_cli
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
        code, out, err = invoke_cli(*args)  # in-process: each fails before any work
        assert code == 2 and not out, (args, err)
        assert "input range it expects is unknown" in err
        assert "--preprocessing tf|torch|unit|raw" in err
        assert "Traceback" not in err and not (workdir / "m.tflite").exists()
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
    proc = run_cli("profile", user_models["mobilenet_v2"], "--data", TEST, "--limit", "300",
                   "--reference", ref, "--runs", "2", "--warmup", "1", "-o", out, check=True)
    assert "NOT MEANINGFUL" in proc.stderr
    r = json.loads(out.read_text())
    assert r["fidelity"]["meaningful"] is False
    assert "reference" in r["fidelity"]["degenerate"] and "model" not in r["fidelity"]["degenerate"]
    proc = run_cli("compare", out, out, "--json")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and "usable outputs" in doc["regressions"]


def test_distillation_reads_the_teacher_preprocessing_from_its_graph(user_models, workdir):
    """A [-1, 1] student distilled from a raw-pixel teacher: each fed its own range."""
    out = workdir / "user_student_kd.keras"  # test_finetune writes student_kd.keras
    run_cli("finetune", user_models["mobilenet_v2"], "--teacher", user_models["efficientnet_b0"],
            "--data", "fashion-mnist-sample:train", "--limit", "300", "--epochs", "1",
            "-o", out, check=True)
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["preprocessing"]["name"] == "tf"
    teacher = side["stage"]["config"]["teacher"]
    assert teacher["preprocessing"]["name"] == "raw"
    assert "Normalization" in teacher["preprocessing"]["decided_by"]


def test_degenerate_outputs_unit():
    """Each degenerate case is caught, and a working model's outputs are not."""
    from edgekit.evaluate.metrics import degenerate, fidelity

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
