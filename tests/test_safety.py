"""Safety: edgekit runs no shell and no code from a file it reads. No ``shell=True`` (or other
shell or code-running call) in the source; model and output paths with spaces, quotes and
``;`` work and inject nothing, locally and over the real OpenSSH server on loopback; a Keras
model with a Lambda layer (code in the file) is refused unless ``--unsafe``; YAML is read
with the safe loader. (Recipe paths that would leave the run folder, and YAML tags that name
Python objects, are in the bad-input corpus: tests/cli/test_bad_input.py.)"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

import sshd_server
from conftest import invoke_cli, run_cli

SOURCE = Path(__file__).resolve().parents[1] / "edgekit"
WEIRD = "a b'c\";touch PWNED;$(touch PWNED2)"  # a folder name a shell would run


def _pwned(*folders: Path) -> list[Path]:
    return [p for f in (*folders, Path.home(), Path("/tmp")) for p in f.glob("PWNED*")]


def test_no_shell_and_no_code_loading_in_the_source():
    banned = {r"shell\s*=\s*True": "a shell", r"\bos\.system\(": "a shell",
              r"\bos\.popen\(": "a shell", r"\beval\(": "code", r"\bexec\(": "code",
              r"yaml\.load\(": "unsafe YAML", r"yaml\.(?:Full|Unsafe)?Loader\b(?<!Safe)": "YAML",
              r"allow_pickle\s*=\s*True": "pickles", r"\bpickle\.loads?\(": "pickles",
              r"safe_mode\s*=\s*False": "Keras code"}
    found = []
    for path in SOURCE.rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, what in banned.items():
                if re.search(pattern, line.split("#")[0]):
                    found.append(f"{path.relative_to(SOURCE)}:{n}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


@pytest.fixture(scope="module")
def weird(tmp_path_factory, small_keras) -> Path:
    """The small zoo model, exported to .tflite, in a folder whose name is a shell command."""
    folder = tmp_path_factory.mktemp("safety") / WEIRD
    folder.mkdir()
    shutil.copy(small_keras, folder / "m o'd;el.keras")
    shutil.copy(f"{small_keras}.json", folder / "m o'd;el.keras.json")
    code, _, err = invoke_cli("export", folder / "m o'd;el.keras", "-o", folder / "m o'd;el.tflite")
    assert code == 0, err
    return folder


def test_paths_with_shell_characters_work_locally(weird):
    out = weird / "r e;s'ult.json"
    code, _, err = invoke_cli("profile", weird / "m o'd;el.tflite", "--runs", "2", "--warmup", "0",
                              "-o", out)
    assert code == 0, err
    assert json.loads(out.read_text())["model"]["path"].endswith("m o'd;el.tflite")
    assert not _pwned(weird, Path.cwd())


@pytest.mark.skipif(sshd_server.SSHD is None, reason="openssh-server is not installed")
def test_paths_with_shell_characters_over_ssh(weird, tmp_path):
    """The model travels to the device and its result back through paths a shell would split
    and run; the run works and nothing is run on either side."""
    server = sshd_server.start(tmp_path / "sshd")
    try:
        out = weird / "ssh r;e's\"ult.json"
        proc = run_cli("profile", weird / "m o'd;el.tflite", *server.cli_args(),
                       "--remote-python", sys.executable, "--runs", "3", "--warmup", "1",
                       "--data", "fashion-mnist-sample:test", "--limit", "20", "-o", out)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(out.read_text())
        assert doc["settings"]["runner"] == "ssh" and doc["accuracy"]["n"] == 20
        assert not _pwned(weird, Path.cwd(), tmp_path)
    finally:
        server.stop()
    assert not list(server.device_tmp.iterdir())  # the device folder was removed


def test_lambda_layer_is_refused_unless_unsafe(tmp_path):
    """A Lambda layer is Python bytecode in the file: edgekit does not load it (so it never
    runs) unless the user passes --unsafe."""
    import keras

    marker = tmp_path / "lambda-ran"
    inp = keras.Input((32, 32, 3))
    code = f"lambda t: (__import__('pathlib').Path({str(marker)!r}).touch(), t)[1]"
    x = keras.layers.Lambda(eval(code))(inp)  # the marker's path is a constant in its bytecode
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inp, keras.layers.Dense(10, activation="softmax")(x)).save(tmp_path / "lam.keras")
    marker.unlink(missing_ok=True)  # the Lambda ran while Keras traced it to build the model
    for argv in (["export", tmp_path / "lam.keras", "-o", tmp_path / "lam.tflite"],
                 ["inspect", tmp_path / "lam.keras"],
                 ["quantize", tmp_path / "lam.keras", "--mode", "fp16", "-o", tmp_path / "q.tflite"]):
        code, _, err = invoke_cli(*argv, "--preprocessing", "tf") if argv[0] != "inspect" else \
            invoke_cli(*argv)
        assert code == 2 and "--unsafe" in err and "Traceback" not in err, err
    assert not marker.exists()  # the file's code never ran
    assert not (tmp_path / "lam.tflite").exists() and not (tmp_path / "q.tflite").exists()
    code, _, err = invoke_cli("export", tmp_path / "lam.keras", "-o", tmp_path / "lam.tflite",
                              "--preprocessing", "tf", "--unsafe")
    assert code == 0, err
    assert marker.exists() and (tmp_path / "lam.tflite").exists()  # trusted: it loads and runs
