"""Determinism: the same inputs and seed give byte-identical artifacts and the same
results, each built by its own ``edgekit`` process.

Every artifact is built twice, in folders ``a/`` and ``b/`` under the same file name, by
separate processes run two at a time: the fp32 TFLite export, the int8 TFLite quantization
(fixed calibration set), the ONNX export and the int8 ONNX quantization. The zoo build with a
fixed seed is built once more and compared with the session's ``small_keras`` (same command,
seed 0). ``edgekit profile --json`` is compared apart from timings, dates and memory.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import spawn_cli

CALIB = ["--calib", "fashion-mnist-sample:train", "--calib-size", "50", "--no-speed-check"]
# conftest's small_keras, with its seed (the default, 0) spelled out
ZOO = ["zoo", "build", "mobilenet_v2", "--width", "0.35", "--depth", "0.3",
       "--resolution", "32", "--classes", "10", "--seed", "0"]

# What may differ between two profiles of the same model on the same machine, and nothing
# else: the timings, the date, and memory figures (RSS depends on allocator timing).
PROFILE_VARIES = {("latency_ms",), ("init_ms",), ("memory",), ("provenance", "date")}


def _commands(small_keras: Path) -> dict[str, list]:
    return {
        "fp32.tflite": ["export", small_keras, "--format", "tflite"],
        "int8.tflite": ["quantize", small_keras, "--mode", "int8", *CALIB],
        "fp32.onnx": ["export", small_keras, "--format", "onnx"],
        "int8.onnx": ["quantize", small_keras, "--format", "onnx", "--mode", "int8", *CALIB],
    }


@pytest.fixture(scope="module")
def built(small_keras, tmp_path_factory) -> Path:
    """Each artifact built twice (``a/NAME``, ``b/NAME``), one process per build, the two
    builds of an artifact side by side; ``a/zoo.keras`` once (``small_keras`` is its twin)."""
    root = tmp_path_factory.mktemp("determinism")
    jobs = []
    for name, args in _commands(small_keras).items():
        for run in ("a", "b"):
            (root / run).mkdir(exist_ok=True)
            jobs.append([*args, "-o", root / run / name])
    jobs.append([*ZOO, "-o", root / "a" / "zoo.keras"])
    with ThreadPoolExecutor(2) as pool:
        for proc, job in zip(pool.map(lambda j: spawn_cli(*j), jobs), jobs):
            assert proc.returncode == 0, f"{job}: {proc.stderr[-2000:]}"
    return root


def _sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".json").read_text())


@pytest.mark.parametrize("name", ["fp32.tflite", "int8.tflite", "fp32.onnx", "int8.onnx"])
def test_artifact_is_byte_identical(built, name):
    a, b = built / "a" / name, built / "b" / name
    assert a.read_bytes() == b.read_bytes(), f"{name} differs between two builds"
    # the sidecars too: same parent, config, facts and hash (the file name is the same)
    assert _sidecar(a) == _sidecar(b)


def test_zoo_build_is_byte_identical(built, small_keras):
    """Keras 3 writes a save date, a zip timestamp and id()-based ``shared_object_id`` values
    into .keras files; edgekit fixes them (models/zoo.py: save_keras), so the same command
    gives the same bytes."""
    zoo = built / "a" / "zoo.keras"
    assert zoo.read_bytes() == small_keras.read_bytes()
    side_a, side_b = _sidecar(zoo), _sidecar(small_keras)
    assert side_a.pop("file") != side_b.pop("file")  # only the file name differs
    assert side_a == side_b
    import keras  # and Keras still reads it (shared objects matched by the new numbers)

    assert keras.saving.load_model(zoo).count_params() == side_a["params"]


def _drop(doc: dict, paths: set[tuple[str, ...]]) -> dict:
    doc = json.loads(json.dumps(doc))
    for path in paths:
        node = doc
        for key in path[:-1]:
            node = node[key]
        assert path[-1] in node, f"{'.'.join(path)} is not in the profile"
        del node[path[-1]]
    return doc


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_profile_results_are_identical_apart_from_timings_dates_memory(built, fmt):
    model, reference = built / "a" / f"int8.{fmt}", built / "a" / f"fp32.{fmt}"
    args = ["profile", model, "--reference", reference, "--data", "fashion-mnist-sample:test",
            "--limit", "200", "--runs", "5", "--warmup", "1", "--threads", "1", "--json"]
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: spawn_cli(*args, check=True), range(2))
    one, two = (json.loads(p.stdout) for p in (first, second))
    assert one["accuracy"]["n"] == 200 and one["fidelity"]["reference"] == str(reference)
    assert _drop(one, PROFILE_VARIES) == _drop(two, PROFILE_VARIES)
    # the same model built by the other process scores identically, image by image
    other = json.loads(spawn_cli(*[built / "b" / f"int8.{fmt}" if a == model else a
                                 for a in args], check=True).stdout)
    assert other["predictions"] == one["predictions"] and other["accuracy"] == one["accuracy"]
    assert other["fidelity"] == one["fidelity"]
