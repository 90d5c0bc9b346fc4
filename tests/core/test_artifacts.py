import json

import pytest

from edgekit.core.artifacts import (atomic_path, detect_format, open_artifact, sha256_of,
                               sidecar_path, write_sidecar)
from edgekit.core.errors import BadInput


def test_detect_format_checks_content(tmp_path):
    for name, content in [("a.tflite", b"xxxxTFL3" + b"\0" * 8), ("b.onnx", b"\x08\x07rest")]:
        (tmp_path / name).write_bytes(content)
    assert detect_format(tmp_path / "a.tflite") == "tflite"
    assert detect_format(tmp_path / "b.onnx") == "onnx"
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"x")
    assert detect_format(tmp_path / "sm") == "savedmodel"


@pytest.mark.parametrize("name,content,message", [
    ("missing.tflite", None, "no such file"),
    ("empty.tflite", b"", "empty file"),
    ("text.tflite", b"hello world, not a model", "not a valid tflite"),
    ("text.keras", b"hello", "not a valid keras"),
    ("text.h5", b"hello", "not a valid keras"),
    ("model.txt", b"hello", "not a model file"),
])
def test_detect_format_rejects(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BadInput, match=message):
        detect_format(path)


def test_folder_without_saved_model(tmp_path):
    with pytest.raises(BadInput, match="not a SavedModel"):
        detect_format(tmp_path)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "m.tflite"
    with pytest.raises(RuntimeError):
        with atomic_path(out) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("converter died")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_refuses_overwrite_without_force(tmp_path):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"old")
    with pytest.raises(BadInput, match="--force"):
        with atomic_path(out):
            pass
    with atomic_path(out, force=True) as tmp:
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite"]


def test_sidecar_roundtrip_and_stale_detection(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"xxxxTFL3" + b"\1" * 32)
    write_sidecar(model, {"format": "tflite", "precision": "int8",
                          "preprocessing": {"mean": [127.5], "std": [127.5]}})
    side = json.loads(sidecar_path(model).read_text())
    assert side["sha256"] == sha256_of(model) and side["size_bytes"] == 40
    art = open_artifact(model)
    assert art.precision == "int8" and art.preprocessing["mean"] == [127.5]
    model.write_bytes(b"xxxxTFL3" + b"\2" * 32)  # changed after the sidecar was written
    art = open_artifact(model)
    assert art.precision is None and "stale_sidecar" in art.meta


def test_corrupt_sidecar_is_bad_input(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"xxxxTFL3")
    sidecar_path(model).write_text("{not json")
    with pytest.raises(BadInput, match="sidecar"):
        open_artifact(model)
