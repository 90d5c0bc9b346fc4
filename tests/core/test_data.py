"""edgekit.core.data on real data: the committed Fashion-MNIST sample and fixtures built from it."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.core import data
from edgekit.core.data import Dataset, load_dataset, sample_indices, to_model_input
from edgekit.core.errors import BadInput, EnvironmentProblem

SAMPLE = data.SAMPLES_DIR / "fashion-mnist"


@pytest.fixture(scope="module")
def sample_test() -> Dataset:
    return load_dataset("fashion-mnist-sample:test")


@pytest.fixture(scope="module")
def photos(sample_test) -> dict[str, np.ndarray]:
    """Real images in the shapes users have: grey, RGB, RGBA and an odd size."""
    grey = sample_test.images(0)
    a, b = sample_test.images(1), sample_test.images(2)
    rgb = np.stack([grey, a, b], axis=-1)
    rgba = np.dstack([rgb, np.full_like(grey, 200)])
    big = np.asarray(Image.fromarray(rgb).resize((40, 30), Image.Resampling.BILINEAR))
    return {"grey": grey, "rgb": rgb, "rgba": rgba, "big": big}


@pytest.fixture
def folder(tmp_path, photos) -> Path:
    root = tmp_path / "imgs"
    (root / "bag").mkdir(parents=True)
    (root / "coat" / "nested").mkdir(parents=True)
    Image.fromarray(photos["grey"]).save(root / "bag" / "a_grey.png")
    Image.fromarray(photos["rgba"]).save(root / "bag" / "b_rgba.PNG")
    Image.fromarray(photos["rgb"]).save(root / "coat" / "c_rgb.bmp")
    Image.fromarray(photos["big"]).save(root / "coat" / "nested" / "d_big.png")
    (root / "coat" / "notes.txt").write_text("not an image, not listed")
    (root / "coat" / ".hidden.png").write_text("hidden files are skipped")
    return root


def _write_npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


# --- every spec form -----------------------------------------------------------------------


@pytest.mark.parametrize("split,n", [("train", 2000), ("test", 1000)])
def test_named_sample(split, n):
    ds = load_dataset(f"fashion-mnist-sample:{split}")
    assert len(ds) == n and ds.source == f"fashion-mnist-sample:{split}"
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert ds.labels.dtype == np.int64 and np.bincount(ds.labels).tolist() == [n // 10] * 10
    img = ds.images(0)
    assert img.dtype == np.uint8 and img.shape == (28, 28) and 0 < img.max() <= 255


def test_full_fashion_mnist_folder_from_env(monkeypatch):
    monkeypatch.setenv("EDGEKIT_FASHION_MNIST", str(SAMPLE))
    ds = load_dataset("fashion-mnist:test", limit=50)
    assert len(ds) == 50 and len(ds.labels) == 50 and ds.class_names == data.FASHION_MNIST_CLASSES


def test_full_fashion_mnist_missing_is_environment_problem(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKIT_FASHION_MNIST", str(tmp_path))
    with pytest.raises(EnvironmentProblem) as err:
        load_dataset("fashion-mnist:train")
    assert str(tmp_path) in str(err.value)
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    assert "fashion-mnist-sample:train" in str(err.value)


@pytest.mark.parametrize("spec", ["fashion-mnist:valid", "mnist:test", "cifar10:"])
def test_unknown_named_dataset_lists_known_names(spec):
    with pytest.raises(BadInput) as err:
        load_dataset(spec)
    assert spec in str(err.value) and "fashion-mnist-sample:test" in str(err.value)


def test_idx_file_with_and_without_labels(tmp_path, sample_test):
    images = tmp_path / "t10k-images-idx3-ubyte"  # uncompressed this time
    images.write_bytes(gzip.decompress((SAMPLE / "t10k-images-idx3-ubyte.gz").read_bytes()))
    unlabelled = load_dataset(images)
    assert unlabelled.labels is None and unlabelled.class_names is None
    np.testing.assert_array_equal(unlabelled.images(slice(0, 5)), sample_test.images(slice(0, 5)))
    x, y = next(unlabelled.batches(8, 28, 28, channels=1))
    assert y is None and x.shape == (8, 28, 28, 1)
    shutil.copy(SAMPLE / "t10k-labels-idx1-ubyte.gz", tmp_path / "t10k-labels-idx1-ubyte")
    labelled = load_dataset(str(images))
    np.testing.assert_array_equal(labelled.labels, sample_test.labels)


def test_folder_of_class_folders(folder, photos):
    ds = load_dataset(folder)
    assert ds.class_names == ["bag", "coat"] and ds.labels.tolist() == [0, 0, 1, 1]
    got = ds.images([0, 1, 2, 3])
    assert isinstance(got, list)
    for img, name in zip(got, ["grey", "rgba", "rgb", "big"]):
        np.testing.assert_array_equal(img, photos[name])
    np.testing.assert_array_equal(ds.images(3), photos["big"])


def test_npz_uint8_and_float_pixels(tmp_path, sample_test):
    x, y = sample_test.images(slice(0, 20)), sample_test.labels[:20]
    for name, stored in [("u8", x), ("f01", x / 255.0), ("f255", x.astype(np.float32))]:
        ds = load_dataset(_write_npz(tmp_path / f"{name}.npz", x=stored, y=y))
        np.testing.assert_array_equal(ds.images(slice(None)), x)
        np.testing.assert_array_equal(ds.labels, y)
    names = np.array(data.FASHION_MNIST_CLASSES)
    spec = _write_npz(tmp_path / "n.npz", x=x[..., None], y=y[:, None], class_names=names)
    ds = load_dataset(spec)
    assert ds.class_names == data.FASHION_MNIST_CLASSES and ds.images(0).shape == (28, 28, 1)


def test_limit_keeps_first_n(sample_test):
    ds = load_dataset("fashion-mnist-sample:test", limit=7)
    assert len(ds) == 7
    np.testing.assert_array_equal(ds.labels, sample_test.labels[:7])
    np.testing.assert_array_equal(ds.images(slice(None)), sample_test.images(slice(0, 7)))


# --- batches -------------------------------------------------------------------------------


def test_batches_same_size_is_exact(sample_test):
    got = list(sample_test.batches(64, 28, 28, channels=1, indices=np.arange(100)))
    assert [len(x) for x, _ in got] == [64, 36]
    x = np.concatenate([b for b, _ in got])
    np.testing.assert_array_equal(x[..., 0], sample_test.images(slice(0, 100)))
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), sample_test.labels[:100])


def test_batches_resize_and_channels(folder, photos):
    ds = load_dataset(folder)
    (x, y), = list(ds.batches(4, 28, 28, channels=3))
    assert x.shape == (4, 28, 28, 3) and x.dtype == np.uint8 and y.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(x[0], np.repeat(photos["grey"][..., None], 3, -1))  # grey
    np.testing.assert_array_equal(x[1], photos["rgb"])  # RGBA: alpha dropped
    np.testing.assert_array_equal(x[2], photos["rgb"])
    resized = Image.fromarray(photos["big"]).resize((28, 28), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(x[3], np.asarray(resized))
    (g, _), = list(ds.batches(8, 28, 28, channels=1, indices=[2, 0]))
    assert g.shape == (2, 28, 28, 1)
    pil_grey = np.asarray(Image.fromarray(photos["rgb"]).convert("L"))
    np.testing.assert_array_equal(g[0, ..., 0], pil_grey)
    np.testing.assert_array_equal(g[1, ..., 0], photos["grey"])


def test_batches_upscale_grey_array(sample_test):
    x, y = next(sample_test.batches(3, 56, 48))
    assert x.shape == (3, 56, 48, 3) and np.all(x[..., 0] == x[..., 2])
    want = Image.fromarray(sample_test.images(1)).resize((48, 56), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(x[1, ..., 0], np.asarray(want))


def test_batches_rejects_other_channel_counts(sample_test):
    with pytest.raises(BadInput):
        next(sample_test.batches(4, 28, 28, channels=2))


# --- to_model_input and sample_indices ------------------------------------------------------


def test_to_model_input_numbers():
    x = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    out = to_model_input(x, {"mean": [127.5], "std": [127.5], "channel_order": "RGB"})
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], [-1.0, 0.5 / 127.5, 1.0], rtol=1e-6)
    per_channel = {"mean": [0.0, 100.0, 200.0], "std": [1.0, 2.0, 5.0]}
    np.testing.assert_allclose(to_model_input(x, per_channel)[0, 0, 0], [0.0, 14.0, 11.0])
    bgr = to_model_input(x, {**per_channel, "channel_order": "BGR"})
    np.testing.assert_allclose(bgr[0, 0, 0], [255.0, 14.0, -40.0])
    np.testing.assert_allclose(to_model_input(x, {"scale": 1 / 255, "offset": 0})[0, 0, 0, 2], 1.0)
    with pytest.raises(BadInput):
        to_model_input(x, {"mean": [1.0, 2.0], "std": [1.0]})
    with pytest.raises(BadInput):
        to_model_input(x, {"mean": [0.0], "std": [0.0]})
    # a grey image takes an RGB preset whose channels agree (unit), not one whose differ (torch)
    grey = np.array([[[[51]]]], dtype=np.uint8)
    unit = {"mean": [0.0] * 3, "std": [255.0] * 3}
    np.testing.assert_allclose(to_model_input(grey, unit), [[[[0.2]]]], rtol=1e-6)
    with pytest.raises(BadInput):
        to_model_input(grey, per_channel)


def test_sample_indices_deterministic_and_balanced(sample_test):
    labels = sample_test.labels
    a = sample_indices(len(labels), 50, seed=3, labels=labels)
    assert a.dtype == np.int64
    assert np.array_equal(a, sample_indices(1000, 50, seed=3, labels=labels))
    assert len(set(a.tolist())) == 50 and np.bincount(labels[a]).tolist() == [5] * 10
    assert sorted(labels[a[:10]].tolist()) == list(range(10))  # every prefix is balanced
    assert not np.array_equal(a, sample_indices(1000, 50, seed=4, labels=labels))
    plain = sample_indices(1000, 30, seed=1)
    assert np.array_equal(plain, sample_indices(1000, 30, seed=1))
    assert len(set(plain.tolist())) == 30
    assert sorted(sample_indices(5, 10).tolist()) == [0, 1, 2, 3, 4]
    uneven = np.array([0] * 90 + [1] * 10)
    assert np.bincount(uneven[sample_indices(100, 30, labels=uneven)]).tolist() == [20, 10]


# --- bad input: one clear line naming the path -----------------------------------------------


def _raises(spec, kind=BadInput, names=None) -> str:
    with pytest.raises(kind) as err:
        load_dataset(spec)
    assert str(names or spec) in str(err.value) and "\n" not in str(err.value)
    return str(err.value)


def test_missing_path(tmp_path):
    _raises(str(tmp_path / "nope"))
    _raises(str(tmp_path / "nope.npz"))


def test_bad_folders(tmp_path, folder):
    (tmp_path / "empty").mkdir()
    assert "empty" in _raises(str(tmp_path / "empty"))
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "notes.txt").write_text("x")
    assert "class sub-folders" in _raises(str(flat))
    (tmp_path / "noimg" / "cls").mkdir(parents=True)
    (tmp_path / "noimg" / "cls" / "readme.txt").write_text("x")
    assert "no images" in _raises(str(tmp_path / "noimg"))


def test_flat_folder_is_unlabelled(tmp_path, folder):
    """A flat folder of images (the usual calibration set) reads as unlabelled images, and a
    stage that needs labels says what labelled data looks like."""
    flat = tmp_path / "photos"
    flat.mkdir()
    for name in ("bag/a_grey.png", "bag/b_rgba.PNG", "coat/c_rgb.bmp"):
        shutil.copy(folder / name, flat / name.replace("/", "_"))
    (flat / "notes.txt").write_text("not an image, not listed")
    ds = load_dataset(str(flat))
    assert ds.labels is None and ds.class_names is None and len(ds) == 3
    x, y = next(ds.batches(8, 12, 12, 3))
    assert y is None and x.shape[1:] == (12, 12, 3) and x.dtype == np.uint8
    from edgekit.optimize.train import load_train_data

    with pytest.raises(BadInput, match="class sub-folders"):
        load_train_data(str(flat), (12, 12))


def test_file_that_is_not_an_image(folder):
    bad = folder / "coat" / "e_broken.jpg"
    bad.write_text("this is not a jpeg")
    ds = load_dataset(folder)  # lazy: listing works, reading names the file
    assert len(ds) == 5
    with pytest.raises(BadInput, match="e_broken.jpg"):
        list(ds.batches(2, 28, 28))


def test_bad_npz(tmp_path, sample_test):
    x, y = sample_test.images(slice(0, 4)), sample_test.labels[:4]
    assert "lacks y" in _raises(_write_npz(tmp_path / "noy.npz", x=x))
    assert "lacks x" in _raises(_write_npz(tmp_path / "nox.npz", images=x, y=y))
    _raises(_write_npz(tmp_path / "mismatch.npz", x=x, y=y[:3]))
    nan = x / 255.0
    nan[0, 0, 0] = np.nan
    assert "NaN" in _raises(_write_npz(tmp_path / "nan.npz", x=nan, y=y))
    inf = x.astype(np.float32)
    inf[1, 2, 3] = np.inf
    _raises(_write_npz(tmp_path / "inf.npz", x=inf, y=y))
    _raises(_write_npz(tmp_path / "normalised.npz", x=x / 127.5 - 1, y=y))
    _raises(_write_npz(tmp_path / "shape.npz", x=x[:, :, :, None, None], y=y))
    _raises(_write_npz(tmp_path / "neg.npz", x=x, y=-y - 1))
    empty = _write_npz(tmp_path / "empty.npz", x=x[:0], y=y[:0])
    assert "empty" in _raises(empty)
    (tmp_path / "junk.npz").write_bytes(b"PK not really a zip")
    _raises(str(tmp_path / "junk.npz"))


def test_bad_idx(tmp_path):
    raw = gzip.decompress((SAMPLE / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((SAMPLE / "t10k-labels-idx1-ubyte.gz").read_bytes())
    cases = {
        "short": raw[:-100],
        "magic": b"\x00\x00\x08\x01" + raw[4:],
        "tiny": raw[:6],
        "gzip": (SAMPLE / "t10k-images-idx3-ubyte.gz").read_bytes()[:5000],
    }
    for name, content in cases.items():
        (tmp_path / name).mkdir()
        path = tmp_path / name / "x-images-idx3-ubyte"
        path.write_bytes(content)
        _raises(str(path))
    empty = tmp_path / "e-images-idx3-ubyte"
    empty.write_bytes(b"\x00\x00\x08\x03" + np.array([0, 28, 28], ">u4").tobytes())
    assert "empty" in _raises(str(empty))
    good = tmp_path / "g-images-idx3-ubyte"
    good.write_bytes(raw)
    (tmp_path / "g-labels-idx1-ubyte").write_bytes(labels[:-10])
    _raises(str(good), names=tmp_path / "g-labels-idx1-ubyte")


def test_other_file_is_not_a_dataset(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"zip")
    assert "not a dataset" in _raises(str(tmp_path / "model.keras"))
    with pytest.raises(BadInput):
        load_dataset("fashion-mnist-sample:test", limit=0)
