"""Shared fixtures: small real models built by the zoo and trained on the committed
Fashion-MNIST sample, cached once per test session (models are never committed)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
EDGEKIT = [sys.executable, "-m", "edgekit"]


def run_cli(*args: str, check: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``edgekit ARGS`` in this process, exactly as the console script does (``cli.main``),
    with ``env`` added to the environment for the call: a child process would spend seconds
    importing TensorFlow again and prove nothing more. Use ``spawn_cli`` where only a new
    process shows what is tested (output on file descriptors, signals, what is imported,
    environment read at start-up, runs in parallel)."""
    code, out, err = invoke_cli(*args, env=env)
    proc = subprocess.CompletedProcess(["edgekit", *map(str, args)], code, out, err)
    if check and code != 0:
        raise AssertionError(f"edgekit {' '.join(map(str, args))} -> {code}\n{err[-3000:]}")
    return proc


def spawn_cli(*args: str, check: bool = False, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``edgekit`` command in a child process."""
    proc = subprocess.run([*EDGEKIT, *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"edgekit {' '.join(map(str, args))} -> {proc.returncode}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def modules_after(args: list[str], modules: tuple[str, ...]) -> tuple[str, list[str]]:
    """Run ``edgekit ARGS`` in a fresh interpreter: (its stdout, which of ``modules`` it had
    imported by the end)."""
    code = (f"import sys\nsys.argv = ['edgekit', *{list(args)!r}]\nfrom edgekit.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"print([m for m in {modules!r} if m in sys.modules], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout, eval(out.stderr.strip().splitlines()[-1])


def profile_json(path, *extra: str, data: str = "fashion-mnist-sample:test", runs: int = 5) -> dict:
    """``edgekit profile`` on 300 class-balanced images, 1 thread, as a parsed document."""
    import json

    proc = run_cli("profile", path, "--data", data, "--limit", "300", "--runs", str(runs),
                   "--warmup", "1", "--threads", "1", "--json", *extra, check=True)
    return json.loads(proc.stdout)


def drop_tolerance(base: dict, new: dict, allowed: float = 1.0) -> float:
    """How far ``new``'s top-1 may fall below ``base``'s on the same images (profile results
    with per-image predictions): ``allowed`` points of real loss plus four standard errors of
    the paired difference, sqrt((d + e - (d - e)^2) / n), where d and e are the shares of
    images only one of the two gets right. A quantized model of a weakly trained one flips
    many ambiguous images both ways (NNCF int8 of the shared model: 1.3 +- 2.3 points on 300
    images, measured over four trainings), so a fixed tolerance is either flaky or blind."""
    import numpy as np

    from edgekit.core.data import load_dataset, sample_indices

    bp, np_ = base["predictions"], new["predictions"]
    assert (bp["dataset"], bp["subset"]) == (np_["dataset"], np_["subset"])
    ds = load_dataset(bp["dataset"])
    n = len(bp["top1"])
    idx = np.arange(len(ds)) if n == len(ds) else np.sort(
        sample_indices(len(ds), n, seed=0, labels=ds.labels))
    y = ds.labels[idx]
    a, b = np.asarray(bp["top1"]) == y, np.asarray(np_["top1"]) == y
    d, e = float(np.mean(a & ~b)), float(np.mean(b & ~a))
    return allowed + 4 * 100 * float(np.sqrt(max(d + e - (d - e) ** 2, 0.0) / n))


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """This test process's folder for what tests write."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    """Where the session's models are built. The suite runs in two pytest-xdist workers
    (pyproject.toml): they share one folder per run, and each model is built there once, by
    whichever worker needs it first (``once``); the other waits and reads it. So both
    workers test the same trained model, and nothing is trained twice."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return tmp_path_factory.mktemp("shared")
    folder = tmp_path_factory.getbasetemp().parent / "shared"  # this run's, not a past run's
    folder.mkdir(exist_ok=True)
    return folder


@contextlib.contextmanager
def once(path: Path):
    """``with once(path) as todo:`` build ``path`` if ``todo``; one process at a time."""
    from filelock import FileLock

    with FileLock(f"{path}.lock"):
        yield not path.exists()


def once_cli(out: Path, *args) -> Path:
    """``out``, written once per run by ``edgekit ARGS -o OUT``."""
    with once(out) as todo:
        if todo:
            run_cli(*args, "-o", out, check=True)
    return out


def once_folder(folder: Path, fill) -> Path:
    """``folder``, filled once per run by ``fill(part)`` in a sibling ``.part`` folder that is
    renamed into place when complete (a worker killed half-way leaves no half folder)."""
    import shutil

    with once(folder) as todo:
        if todo:
            part = folder.with_name(folder.name + ".part")
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir()
            fill(part)
            part.rename(folder)
    return folder


@pytest.fixture(scope="session")
def small_keras(shared) -> Path:
    """An untrained MobileNetV2, width 0.35, depth 0.3, 32x32, 10 classes, built by
    ``edgekit zoo build``. Depth 0.3 keeps one block per stage but one (73 layers, not 154):
    TensorFlow's graph tracing, which most of the suite's time goes to, costs per layer, and
    the shallower model trains to a higher accuracy in the same 12 epochs (68% against 55%)."""
    return once_cli(shared / "mnv2_small.keras", "zoo", "build", "mobilenet_v2", "--width",
                    "0.35", "--depth", "0.3", "--resolution", "32", "--classes", "10")


@pytest.fixture(scope="session")
def trained_keras(shared, small_keras) -> Path:
    """``small_keras`` trained for about a minute on the committed Fashion-MNIST sample."""
    path = shared / "mnv2_trained.keras"
    with once(path) as todo:
        if todo:
            _train(small_keras, path)
    return path


def _train(small_keras: Path, path: Path) -> None:
    from edgekit.core.artifacts import child_meta, open_artifact, write_sidecar
    from edgekit.core.data import load_dataset, to_model_input
    import keras
    import numpy as np

    parent = open_artifact(small_keras)
    model = keras.saving.load_model(small_keras)
    train = load_dataset("fashion-mnist-sample:train")
    x = np.concatenate([xb for xb, _ in train.batches(500, 32, 32, 3)])
    x = to_model_input(x, parent.preprocessing)
    # The zoo keeps the reference BN momentum (0.999 for MobileNetV2); a one-minute run on
    # 2,000 images is too short for moving statistics that slow, so train with 0.9.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, train.labels, epochs=12, batch_size=64, verbose=0)
    model.save(path)
    write_sidecar(path, child_meta(parent, "train", {"epochs": 12, "data": train.source,
                                                  "bn_momentum": 0.9},
                                   format="keras", precision="fp32",
                                   labels=train.class_names,
                                   **{k: parent.meta[k] for k in ("input", "output")}))


@pytest.fixture(scope="session")
def trained_int8(shared, trained_keras) -> Path:
    """``trained_keras`` quantized to int8 with the committed training sample (200 images,
    the default), speed check included (test_end_to_end reads it)."""
    return once_cli(shared / "trained_int8_shared.tflite", "quantize", trained_keras, "--mode",
                    "int8", "--calib", "fashion-mnist-sample:train")


@pytest.fixture(scope="session")
def trained_fp32(shared, trained_keras) -> Path:
    """``trained_keras`` exported to float TFLite."""
    return once_cli(shared / "trained_fp32_shared.tflite", "export", trained_keras)


def invoke_cli(*args: str, env: dict | None = None) -> tuple[int, str, str]:
    """Run ``edgekit`` in this process, exactly as the console script does (``cli.main``):
    (exit code, stdout, stderr). An exception that the CLI does not turn into an exit code
    propagates, so a test sees it. For many fast cases, where a child process per case would
    spend its time importing TensorFlow."""
    import contextlib
    import io

    from edgekit.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_env = sys.argv, dict(os.environ)
    sys.argv = ["edgekit", *map(str, args)]
    os.environ.update(env or {})
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="session")
def small_formats(shared, small_keras) -> Path:
    """``small_keras`` as m.keras, m.h5, m.tflite and m.onnx (with sidecars) in one folder,
    for tests that copy them and then damage the copies."""
    import shutil

    import keras

    def fill(part: Path) -> None:
        shutil.copy(small_keras, part / "m.keras")
        shutil.copy(f"{small_keras}.json", part / "m.keras.json")
        for fmt in ("tflite", "onnx"):
            code, _, err = invoke_cli("export", part / "m.keras", "--format", fmt,
                                      "-o", part / f"m.{fmt}")
            assert code == 0, err
        keras.saving.load_model(part / "m.keras").save(part / "m.h5")

    return once_folder(shared / "small_formats", fill)


@pytest.fixture(scope="session")
def photos(shared):
    """A flat folder of 200 unlabelled PNG images: a calibration set as users have it."""
    from PIL import Image

    from edgekit.core.data import load_dataset

    def fill(part):
        ds = load_dataset("fashion-mnist-sample:train")
        for i in range(0, len(ds), 10):
            Image.fromarray(ds.images(i)).save(part / f"img_{i:04d}.png")

    return once_folder(shared / "photos", fill)
