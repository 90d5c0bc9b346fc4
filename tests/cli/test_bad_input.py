"""The bad-input corpus: every command, given what users get wrong, answers with one clear
line, the documented exit code (errors.py: 2 bad input, 3 environment), no traceback, and
leaves the folder exactly as it was: no partial output, no existing file changed.

The cases are data (``CASES``). They run in one process through ``cli.main`` (invoke_cli), so
that TensorFlow is imported once, not once per case; an exception that escapes the CLI fails
the case. The files they use are made once per module in ``box`` from a real zoo model:
missing, empty, truncated and header-flipped model files of each format, files with the wrong
extension, images that are not images, empty and one-class datasets, NaN/inf calibration data,
and malformed and adversarial YAML (recipes and device profiles)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import invoke_cli


# --- the files the cases use ----------------------------------------------------------------
def _flip(src: Path, dst: Path, at_end: bool = False, n: int = 16) -> None:
    """Every bit of the first (or last) ``n`` bytes inverted: the format's magic and root are
    gone (a zip, such as .keras, is read from its end)."""
    data = bytearray(src.read_bytes())
    for i in range(n):
        data[-1 - i if at_end else i] ^= 0xFF
    dst.write_bytes(bytes(data))


def _png(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    chans = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 255, (size[1], size[0], chans), dtype=np.uint8)
    Image.fromarray(arr.squeeze(-1) if chans == 1 else arr, mode).save(path)


RECIPE = "name: r\nmodel: m.keras\nstages:\n  - {stage: quantize, mode: fp16}\n"


@pytest.fixture(scope="module")
def box(tmp_path_factory, small_formats) -> Path:
    d = tmp_path_factory.mktemp("bad_input")
    for f in small_formats.iterdir():
        shutil.copy(f, d / f.name)
    for fmt in ("keras", "tflite", "onnx", "h5"):
        (d / f"empty.{fmt}").write_bytes(b"")
        data = (d / f"m.{fmt}").read_bytes()
        (d / f"trunc.{fmt}").write_bytes(data[: len(data) // 3])
        _flip(d / f"m.{fmt}", d / f"flip.{fmt}", at_end=fmt == "keras")
    data = (d / "m.onnx").read_bytes()  # op_type (field 4) not UTF-8; found by test_fuzz
    assert b'"\x04Conv' in data
    (d / "optype.onnx").write_bytes(data.replace(b'"\x04Conv', b'"\x04\x80onv', 1))
    shutil.copy(d / "m.tflite", d / "tfl_as.onnx")
    shutil.copy(d / "m.onnx", d / "onnx_as.keras")
    shutil.copy(d / "m.tflite", d / "model.bin")
    (d / "saved_bad").mkdir()
    (d / "saved_bad" / "saved_model.pb").write_bytes(b"\x08\x01garbage" * 50)
    (d / "notimg.png").write_text("this is text, not a PNG\n")
    _png(d / "photo.png", (40, 30))
    # datasets
    (d / "ds_empty").mkdir()
    for i in range(4):
        _png(d / "ds_one" / "only" / f"{i}.png", (32, 32))
    (d / "ds_noimg" / "a").mkdir(parents=True)
    (d / "ds_noimg" / "a" / "readme.txt").write_text("no images here")
    for i in range(3):
        _png(d / "ds_badimg" / ("a" if i % 2 else "b") / f"{i}.png", (32, 32))
    (d / "ds_badimg" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    y = np.arange(8) % 2
    np.savez(d / "nan.npz", x=np.where(x > 0.9, np.nan, x), y=y)
    np.savez(d / "inf.npz", x=np.where(x > 0.9, np.inf, x), y=y)
    np.savez(d / "shape.npz", x=x.reshape(8, -1), y=y)
    np.savez(d / "labels.npz", x=x, y=y[:5])
    np.savez(d / "nolabels.npz", images=x)
    # YAML: recipes
    yamls = {
        "malformed": "name: r\nstages: [\n",
        "pytag": "name: r\nmodel: !!python/object/apply:os.system ['touch pwned']\nstages: []\n",
        "dupkey": RECIPE + "name: again\n",
        "deep": "name: r\nstages: " + "[" * 5000 + "]" * 5000 + "\n",
        "bomb": "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else '1'}]\n"
                        for i in range(9)) + "name: r\nmodel: m.keras\nstages: *l8\n",
        "notmap": "- just\n- a list\n",
        "nostage": "name: r\nmodel: m.keras\nstages:\n  - {stage: fly}\n",
        "badopt": "name: r\nmodel: m.keras\nstages:\n  - {stage: quantize, mode: fp16, colour: red}\n",
        "badtype": "name: r\nmodel: m.keras\nstages:\n  - {stage: quantize, mode: [int8]}\n",
        "budget": "name: r\ndevice: pixel7\nbudget: {latency_ms: -5}\nstages:\n"
                  "  - {stage: scale, classes: 10}\n",
        "budget0": "name: r\ndevice: pixel7\nbudget: {size_mb: 0}\nstages:\n"
                   "  - {stage: scale, classes: 10}\n",
        "device": "name: r\nmodel: m.keras\ndevice: toaster\nstages:\n  - {stage: quantize, mode: fp16}\n",
        "stagedevice": "name: r\nmodel: m.keras\nstages:\n  - {stage: quantize, mode: fp16}\n"
                       "  - stage: profile\n    device: toaster\n",
        "forward": "name: r\nmodel: m.keras\nstages:\n  - {stage: quantize, mode: fp16, input: '@later'}\n"
                   "  - {stage: export, id: later}\n",
        "escape": "name: r\nmodel: m.keras\nstages:\n  - {stage: quantize, mode: fp16, id: ../../x}\n",
        "absout": "name: r\nmodel: m.keras\nstages:\n  - {stage: quantize, mode: fp16, output: /tmp/x.tflite}\n",
        "badname": "name: '../evil'\nmodel: m.keras\nstages:\n  - {stage: quantize, mode: fp16}\n",
        "binary": "\x00\x01\x02name: r\n",
    }
    for name, text in yamls.items():
        (d / f"{name}.yaml").write_text(text)
    # YAML: device profiles (user overrides under EDGEKIT_HOME/devices)
    devices = d / "home" / "devices"
    devices.mkdir(parents=True)
    pi = (Path(__file__).parents[2] / "edgekit/catalog/devices/raspberry-pi-4.yaml").read_text()
    (devices / "pi-malformed.yaml").write_text(pi.replace("name: raspberry-pi-4", "name: pi-malformed")
                                               .replace("kind: sbc", "kind: [sbc"))
    (devices / "pi-negative.yaml").write_text(pi.replace("name: raspberry-pi-4", "name: pi-negative")
                                              .replace("max_ghz: 1.5", "max_ghz: -1.5"))
    (devices / "pi-wrongname.yaml").write_text(pi)
    (devices / "pi-budget.yaml").write_text(pi.replace("name: raspberry-pi-4", "name: pi-budget")
                                            .replace("latency_ms: 100", "latency_ms: 0"))
    # results documents
    code, out, err = invoke_cli("profile", d / "m.tflite", "--runs", "2", "--warmup", "1", "--json")
    assert code == 0, err
    prof = json.loads(out)
    (d / "base.json").write_text(json.dumps(prof))
    (d / "trunc.json").write_text(json.dumps(prof)[:200])
    (d / "notprofile.json").write_text(json.dumps({"schema": "something/1"}))
    (d / "badtype.json").write_text(json.dumps({**prof, "latency_ms": {"p50": "fast"}}))
    (d / "nanlat.json").write_text(json.dumps(prof).replace('"p50": ', '"p50": NaN, "x": '))
    (d / "existing.tflite").write_bytes(b"keep me")
    return d


# --- the corpus ------------------------------------------------------------------------------
# (id, argv, exit code, a fragment of the one line); "HOME" in an argument is the box's
# EDGEKIT_HOME. Outputs named here must not appear.
BAD, ENV = 2, 3
CASES = [
    # model files: missing, empty, truncated, header-flipped, wrong or unknown extension
    ("missing-model", ["inspect", "nope.tflite"], BAD, "no such file"),
    ("empty-tflite", ["inspect", "empty.tflite"], BAD, "empty file"),
    ("empty-onnx", ["profile", "empty.onnx"], BAD, "empty file"),
    ("empty-keras", ["export", "empty.keras", "-o", "o.tflite"], BAD, "empty file"),
    ("empty-h5", ["quantize", "empty.h5", "--mode", "fp16", "-o", "o.tflite"], BAD, "empty file"),
    ("trunc-tflite", ["profile", "trunc.tflite", "--runs", "1"], BAD, "trunc.tflite"),
    ("trunc-onnx", ["inspect", "trunc.onnx"], BAD, "trunc.onnx"),
    ("trunc-keras", ["quantize", "trunc.keras", "--mode", "int8", "-o", "o.tflite"], BAD,
     "trunc.keras"),
    ("trunc-h5", ["export", "trunc.h5", "--format", "onnx", "-o", "o.onnx"], BAD, "trunc.h5"),
    ("flip-tflite", ["predict", "flip.tflite", "photo.png"], BAD, "flip.tflite"),
    ("flip-onnx", ["profile", "flip.onnx", "--runs", "1"], BAD, "flip.onnx"),
    ("onnx-op-type-not-text", ["inspect", "optype.onnx", "--json"], BAD, "not UTF-8 text"),
    ("flip-keras", ["export", "flip.keras", "-o", "o.tflite"], BAD, "flip.keras"),
    ("flip-h5", ["inspect", "flip.h5"], BAD, "flip.h5"),
    ("tflite-named-onnx", ["inspect", "tfl_as.onnx"], BAD, "not a valid onnx file"),
    ("onnx-named-keras", ["quantize", "onnx_as.keras", "--mode", "fp16", "-o", "o.tflite"], BAD,
     "onnx_as.keras"),
    ("unknown-extension", ["inspect", "model.bin"], BAD, "model.bin"),
    ("bad-savedmodel", ["export", "saved_bad", "-o", "o.tflite"], BAD, "saved_bad"),
    ("model-is-a-dataset", ["profile", "ds_one"], BAD, "ds_one"),
    # images and datasets
    ("image-not-image", ["predict", "m.tflite", "notimg.png"], BAD, "not a readable image"),
    ("image-missing", ["predict", "m.tflite", "nope.png"], BAD, "nope.png"),
    ("data-empty-folder", ["profile", "m.tflite", "--data", "ds_empty"], BAD, "empty"),
    ("data-no-images", ["quantize", "m.keras", "--mode", "int8", "--calib", "ds_noimg",
                        "-o", "o.tflite"], BAD, "no images"),
    ("data-broken-image", ["profile", "m.tflite", "--data", "ds_badimg", "--runs", "1"], BAD,
     "broken.png"),
    ("data-one-class", ["finetune", "m.keras", "--data", "ds_one", "--val-data", "ds_one",
                        "--epochs", "1", "-o", "o.keras"], BAD, "1 class"),
    ("data-unknown-named", ["profile", "m.tflite", "--data", "imagenet:val"], BAD, "imagenet"),
    ("calib-nan", ["quantize", "m.keras", "--mode", "int8", "--calib", "nan.npz",
                   "-o", "o.tflite"], BAD, "NaN"),
    ("calib-inf", ["quantize", "m.keras", "--format", "onnx", "--mode", "int8", "--calib",
                   "inf.npz", "-o", "o.onnx"], BAD, "infinite"),
    ("calib-shape", ["quantize", "m.keras", "--mode", "int8", "--calib", "shape.npz",
                     "-o", "o.tflite"], BAD, "shape"),
    ("labels-mismatch", ["profile", "m.tflite", "--data", "labels.npz"], BAD, "y has shape"),
    ("npz-wrong-keys", ["prune", "m.keras", "--data", "nolabels.npz", "--sparsity", "0.5",
                        "-o", "o.keras"], BAD,
     "lacks"),
    ("data-more-classes", ["profile", "m.tflite", "--data", "ds_badimg", "--limit", "0"], BAD,
     "limit"),
    # unknown names and values
    ("unknown-device", ["profile", "m.tflite", "--device", "toaster"], BAD, "unknown device"),
    ("unknown-device-scale", ["scale", "--device", "toaster"], BAD, "unknown device"),
    ("device-path", ["devices", "show", "../../etc/passwd"], BAD, "bad device name"),
    ("unknown-family", ["zoo", "build", "resnet50", "-o", "o.keras"], BAD, "unknown model family"),
    ("unknown-mode", ["quantize", "m.keras", "--mode", "int3", "-o", "o.tflite"], BAD, "int3"),
    ("unknown-opset", ["export", "m.keras", "--format", "onnx", "--opset", "7", "-o", "o.onnx"],
     BAD, "opset"),
    ("unknown-format", ["export", "m.keras", "--format", "coreml", "-o", "o.mlmodel"], BAD,
     "coreml"),
    ("calibrate-unknown-device", ["calibrate", "--device", "toaster"], BAD, "toaster"),
    ("calibrate-unknown-suite", ["calibrate", "--suite", "huge"], BAD, "huge"),
    ("unknown-runner", ["profile", "m.tflite", "--runner", "carrier-pigeon"], BAD, "runner"),
    ("unknown-option", ["inspect", "m.tflite", "--colour"], BAD, "--colour"),
    ("host-is-option", ["profile", "m.tflite", "--host", "-oProxyCommand=touch pwned"], BAD,
     "not a host name"),
    ("bad-port", ["profile", "m.tflite", "--host", "pi@10.0.0.1", "--port", "70000"], BAD,
     "port"),
    # numbers out of range
    ("budget-negative", ["scale", "--device", "pixel7", "--latency-ms", "-1"], BAD, "positive"),
    ("budget-zero", ["scale", "--device", "pixel7", "--size-mb", "0"], BAD, "positive"),
    ("budget-nan", ["scale", "--device", "pixel7", "--memory-mb", "nan"], BAD, "memory"),
    ("budget-inf", ["scale", "--device", "pixel7", "--latency-ms", "inf"], BAD, "latency"),
    ("sparsity-above-1", ["prune", "m.keras", "--data", "ds_badimg", "--sparsity", "1.5",
                          "-o", "o.keras"], BAD, "sparsity"),
    ("runs-zero", ["profile", "m.tflite", "--runs", "0"], BAD, "runs"),
    ("threads-negative", ["profile", "m.tflite", "--threads", "-2"], BAD, "threads"),
    ("timeout-zero", ["profile", "m.tflite", "--timeout", "0"], BAD, "--timeout"),
    ("zoo-width-zero", ["zoo", "build", "mobilenet_v2", "--width", "0", "-o", "o.keras"], BAD,
     "width"),
    ("zoo-resolution-tiny", ["zoo", "build", "mobilenet_v2", "--resolution", "3",
                             "-o", "o.keras"], BAD, "resolution"),
    ("calib-size-zero", ["quantize", "m.keras", "--mode", "int8", "--calib-size", "0",
                         "-o", "o.tflite"], BAD, "calib"),
    # outputs
    ("output-exists", ["export", "m.keras", "-o", "existing.tflite"], BAD, "exists"),
    ("output-over-input", ["quantize", "m.tflite", "--mode", "fp16", "-o", "m.tflite", "--force"],
     BAD, "m.tflite"),
    ("output-no-folder", ["export", "m.keras", "-o", "nofolder/o.tflite"], BAD, "does not exist"),
    ("output-wrong-suffix", ["export", "m.keras", "--format", "onnx", "-o", "o.tflite"], BAD,
     "o.tflite"),
    # YAML: recipes
    ("recipe-missing", ["run", "nope.yaml"], BAD, "nope"),
    ("sweep-missing", ["sweep", "nope.yaml"], BAD, "nope"),
    ("sweep-malformed", ["sweep", "malformed.yaml"], BAD, "malformed YAML"),
    ("sweep-is-a-recipe-name", ["sweep", "fashion-mnist-demo"], BAD, "no shipped sweep"),
    ("lab-start-both", ["lab", "start", "--head", "--address", "x:1"], BAD, "--head"),
    ("lab-prepare-nothing", ["lab", "prepare"], BAD, "--host"),
    ("calibrate-lab-and-host", ["calibrate", "-d", "raspberry-pi-4", "--address", "127.0.0.1:1",
                                "--host", "u@h"], BAD, "exclude each other"),
    ("calibrate-lab-adb", ["calibrate", "-d", "pixel7", "--address", "127.0.0.1:1"], BAD,
     "not its adb runner"),
    ("calibrate-lab-missing", ["calibrate", "--lab", "nope.yaml"], BAD, "nope.yaml"),
    ("scale-lab-no-measure", ["scale", "-d", "host", "--lab", "nope.yaml"], BAD, "add --measure"),
    ("recipe-malformed", ["run", "malformed.yaml"], BAD, "malformed YAML"),
    ("recipe-python-tag", ["run", "pytag.yaml"], BAD, "malformed YAML"),
    ("recipe-duplicate-key", ["run", "dupkey.yaml"], BAD, "given twice"),
    ("recipe-deep", ["run", "deep.yaml"], BAD, "nested too deeply"),
    ("recipe-alias-bomb", ["run", "bomb.yaml"], BAD, "aliases"),
    ("recipe-not-mapping", ["run", "notmap.yaml"], BAD, "mapping"),
    ("recipe-binary", ["run", "binary.yaml"], BAD, "binary.yaml"),
    ("recipe-unknown-stage", ["run", "nostage.yaml"], BAD, "fly"),
    ("recipe-unknown-option", ["run", "badopt.yaml"], BAD, "colour"),
    ("recipe-option-type", ["run", "badtype.yaml"], BAD, "stages.0.mode"),
    ("recipe-negative-budget", ["run", "budget.yaml"], BAD, "latency_ms"),
    ("recipe-zero-budget", ["run", "budget0.yaml"], BAD, "size_mb"),
    ("recipe-unknown-device", ["run", "device.yaml"], BAD, "device.yaml:3: device: unknown"),
    ("recipe-stage-unknown-device", ["run", "stagedevice.yaml", "--dry-run"], BAD,
     "stagedevice.yaml:6: stages.1.device: unknown device 'toaster'"),
    ("recipe-forward-ref", ["run", "forward.yaml"], BAD, "later"),
    ("recipe-id-escapes", ["run", "escape.yaml"], BAD, "id"),
    ("recipe-output-option", ["run", "absout.yaml"], BAD, "output"),
    ("recipe-name-escapes", ["run", "badname.yaml"], BAD, "name"),
    # YAML: device profiles
    ("device-malformed", ["devices", "show", "pi-malformed"], BAD, "malformed YAML"),
    ("device-negative", ["devices", "show", "pi-negative"], BAD, "max_ghz"),
    ("device-wrong-name", ["devices", "show", "pi-wrongname"], BAD, "does not match"),
    ("device-zero-budget", ["scale", "--device", "pi-budget"], BAD, "latency_ms"),
    # results documents
    ("compare-missing", ["compare", "base.json", "nope.json"], BAD, "nope.json"),
    ("compare-truncated", ["compare", "base.json", "trunc.json"], BAD, "trunc.json"),
    ("compare-not-profile", ["compare", "base.json", "notprofile.json"], BAD, "notprofile.json"),
    ("compare-bad-type", ["compare", "base.json", "badtype.json"], BAD, "latency_ms.p50"),
    ("compare-nan", ["compare", "base.json", "nanlat.json"], BAD, "nanlat.json"),
    ("compare-bad-limit", ["compare", "base.json", "base.json", "--max-size-growth", "lots"], BAD,
     "percentage"),
    ("report-not-result", ["report", "m.keras.json", "notprofile.json", "-o", "r.html"], BAD,
     "notprofile.json"),
    ("report-wrong-suffix", ["report", "base.json", "-o", "r.pdf"], BAD, "r.pdf"),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest()
                                       if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv,code,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(box, monkeypatch, argv, code, fragment):
    monkeypatch.chdir(box)
    before = _snapshot(box)
    got, out, err = invoke_cli(*argv, env={"EDGEKIT_HOME": str(box / "home")})
    assert got == code, err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err  # one line, the last
    # what may come before it: a warning logged before the failure (e.g. "no sidecar")
    assert all(ln.startswith(("WARNING ", " ")) for ln in err.splitlines()[:-1] if ln.strip()), err
    assert fragment.lower() in errors[0].lower(), errors[0]
    assert out == ""  # nothing on stdout: no half a JSON document
    assert _snapshot(box) == before  # no partial output, nothing changed
    assert not (Path.home() / "pwned").exists() and not (box / "pwned").exists()


def test_corpus_covers_every_command():
    """Each command is in the corpus, and the corpus has the 40 cases the issue asks for."""
    from typer.main import get_command

    from edgekit.cli import app

    group = get_command(app)
    commands = set(group.list_commands(None)) - {"doctor", "emulator"}  # no input to get wrong / 2 flags
    used = {c[1][0] for c in CASES}
    assert commands <= used, commands - used
    assert len(CASES) >= 40


@pytest.mark.parametrize("images", [("grey", "L", (32, 32)), ("rgba", "RGBA", (32, 32)),
                                    ("big", "RGB", (300, 200)), ("tiny", "RGB", (5, 7))],
                         ids=lambda i: i[0])
def test_images_of_any_size_and_mode_are_read(box, monkeypatch, images, tmp_path):
    """Grey, RGBA and odd sizes are not errors: they are converted to the model's input."""
    name, mode, size = images
    monkeypatch.chdir(box)
    _png(tmp_path / f"{name}.png", size, mode)
    code, out, err = invoke_cli("predict", "m.tflite", tmp_path / f"{name}.png", "--json")
    assert code == 0, err
    assert len(json.loads(out)["predictions"]) == 1


def test_a_dataset_of_mixed_sizes_and_modes_is_read(box, tmp_path):
    for i, (mode, size) in enumerate([("RGB", (32, 32)), ("L", (50, 20)), ("RGBA", (17, 33))]):
        for cls in ("a", "b"):
            _png(tmp_path / "ds" / cls / f"{i}.png", size, mode)
    code, out, err = invoke_cli("profile", box / "m.tflite", "--data", tmp_path / "ds",
                                "--runs", "1", "--warmup", "0", "--json")
    assert code == 0, err
    assert json.loads(out)["accuracy"]["n"] == 6
