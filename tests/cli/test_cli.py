"""The command-line contract: help everywhere, instant start, one-line errors with exit 2,
no partial output files."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main

from conftest import run_cli, spawn_cli
from edgekit.cli import app


def _commands(group=None, prefix=()):
    """Every command, the lazily made stage commands included."""
    click_group = typer.main.get_command(app) if group is None else group
    for name in click_group.list_commands(None):
        cmd = click_group.get_command(None, name)
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*prefix, name))
        else:
            yield (*prefix, name), cmd


COMMANDS = list(_commands())


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_and_option_has_help(path, cmd):
    assert cmd.help, f"edgekit {' '.join(path)} has no help text"
    for param in cmd.params:
        if param.param_type_name == "option" and param.name != "help":
            assert param.help, f"edgekit {' '.join(path)} {param.opts[0]} has no help text"


def test_cli_import_is_light():
    code = ("import sys, edgekit.cli; heavy = [m for m in ('tensorflow', 'keras', 'onnxruntime', "
            "'onnx', 'nncf', 'tf2onnx', 'ai_edge_litert') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_zoo_list_json():
    import json
    proc = run_cli("zoo", "list", "--json", check=True)
    names = {f["name"] for f in json.loads(proc.stdout)["families"]}
    assert {"mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
            "efficientnet_b0", "efficientnet_b7", "efficientnet_lite0", "efficientnet_lite4"} <= names


def test_doctor_json_lists_runtimes():
    import json
    doc = json.loads(run_cli("doctor", "--json", check=True).stdout)
    assert doc["schema"] == "edgekit.doctor/1"
    assert doc["packages"]["ai-edge-litert"] and doc["packages"]["keras"]
    assert "CPUExecutionProvider" in doc["onnxruntime_providers"]


def _bad_inputs(tmp, good):
    (tmp / "junk.tflite").write_bytes(b"this is not a flatbuffer at all")
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "text.keras").write_text("not a zip")
    (tmp / "notes.txt").write_text("hello")
    (tmp / "empty_dir").mkdir()
    out = tmp / "out.tflite"
    return [
        ("missing model", ["inspect", tmp / "missing.tflite"]),
        ("corrupt tflite", ["inspect", tmp / "junk.tflite"]),
        ("empty onnx", ["inspect", tmp / "empty.onnx"]),
        ("text as keras", ["quantize", tmp / "text.keras", "--mode", "fp16", "-o", out]),
        ("non-model file", ["export", tmp / "notes.txt", "-o", out]),
        ("unknown zoo name", ["zoo", "build", "resnet50", "-o", tmp / "r.keras"]),
        ("unknown mode", ["quantize", tmp / "text.keras", "--mode", "int3", "-o", out]),
        ("empty data folder", ["profile", good, "--data", tmp / "empty_dir"]),
        ("unknown dataset", ["quantize", good, "--mode", "int8",
                             "--calib", "imagenet:val", "-o", out]),
        ("bad option value", ["zoo", "build", "mobilenet_v2", "--width", "abc", "-o", tmp / "x.keras"]),
        ("missing output dir", ["zoo", "build", "mobilenet_v2", "-o", tmp / "no" / "x.keras"]),
    ]


def test_bad_input_gives_one_line_and_exit_2(tmp_path, small_keras):
    for label, args in _bad_inputs(tmp_path, small_keras):  # all a user sees, C++ logs too
        proc = spawn_cli(*args)
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == 2, f"{label}: exit {proc.returncode}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, f"{label}: traceback\n{proc.stderr}"
        assert proc.stdout == "", f"{label}: wrote to stdout"
        assert len(lines) <= 3, f"{label}: {len(lines)} lines\n{proc.stderr}"
    assert not (tmp_path / "out.tflite").exists()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_existing_output_is_not_overwritten(tmp_path, small_keras):
    out = tmp_path / "m.tflite"
    out.write_bytes(b"precious")
    proc = run_cli("export", small_keras, "-o", out)
    assert proc.returncode == 2 and "--force" in proc.stderr
    assert out.read_bytes() == b"precious"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_is_in_the_readme(path):
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"edgekit {' '.join(path)}" in readme
