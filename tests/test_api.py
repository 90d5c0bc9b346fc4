"""The Python API (``import edgekit as ek``): the example script runs, stage functions take
paths or results and refuse unknown options, results have attribute access and JSON, and
``import edgekit`` imports no framework."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SMALL_RECIPE = """\
schema: edgekit.recipe/1
name: api-small
zoo: {family: mobilenet_v2, width: 0.35, depth: 0.3, resolution: 32, classes: 10}
datasets: {train: "fashion-mnist-sample:train", test: "fashion-mnist-sample:test"}
stages:
  - {id: int8, stage: quantize, mode: int8, calib: "@train", calib_size: 50, speed_check: false}
  - {stage: profile, data: "@test", limit: 100, runs: 3, threads: 1}
gates: {max_size_mb: 5}
"""


def test_the_example_runs(tmp_path):
    recipe = tmp_path / "small.yaml"
    recipe.write_text(SMALL_RECIPE)
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py"), str(recipe)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    p50, top1, agreement = (float(x) for x in lines[1].split())
    assert p50 > 0 and 0 <= top1 <= 100 and 0 <= agreement <= 100
    assert lines[2].startswith("api-small: passed; run folder ")
    work = Path(lines[0].removeprefix("working in "))
    assert {"m.keras", "m_int8.tflite"} <= {p.name for p in work.iterdir()}
    assert list(tmp_path.iterdir()) == [recipe]  # nothing written where it was started


def test_import_edgekit_is_light():
    code = ("import sys, edgekit as ek; ek.EdgekitError; "
            "print(sorted(m for m in ('tensorflow', 'pydantic', 'typer', 'numpy', 'onnx') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_errors_are_one_family():
    import edgekit as ek

    for cls in (ek.BadInput, ek.EnvironmentProblem, ek.GateFailed):
        assert issubclass(cls, ek.EdgekitError)
    assert int(ek.BadInput("x").code) == 2 and int(ek.EnvironmentProblem("x").code) == 3


def test_stage_functions_refuse_unknown_and_bad_options(tmp_path):
    import edgekit as ek

    with pytest.raises(ek.BadInput, match="unknown option 'calibration'.*calib"):
        ek.quantize(tmp_path / "m.keras", mode="int8", calibration="x")
    with pytest.raises(ek.BadInput, match=r"--calib-size \(calib_size\)"):
        ek.quantize(tmp_path / "m.keras", mode="int8", calib_size="many")
    with pytest.raises(ek.BadInput, match="--timeout nan is not a finite number"):
        ek.profile(tmp_path / "m.keras", timeout=float("nan"))
    with pytest.raises(ek.BadInput, match="no such file|does not exist"):
        ek.export(tmp_path / "missing.keras", out=tmp_path / "m.tflite")


def test_names_stay_functions_after_the_library_is_imported():
    """A stage function is never replaced by a submodule of the same name."""
    import importlib

    import edgekit as ek

    for name in ek.__all__[5:]:  # the stage functions
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(f"edgekit.{name}")
        assert callable(getattr(ek, name)) and getattr(ek, name).__doc__


def test_results_read_as_attributes_and_json(shared, small_keras):
    import edgekit as ek

    q = ek.export(small_keras, out=shared / "api_m.tflite", force=True)
    assert q.path.is_file() and q.to_json()["path"] == str(q.path)
    assert q.to_json()["sha256"] == q.sha256
    r = ek.profile(q, data="fashion-mnist-sample:test", reference=small_keras, limit=100,
                   runs=3, threads=1)
    doc = r.to_json()
    assert r.latency.p50_ms == doc["latency_ms"]["p50"] > 0
    assert r.accuracy.top1 == doc["accuracy"]["top1"]
    assert r.fidelity.top1_agreement == doc["fidelity"]["top1_agreement"]
    assert r.model.path == str(q.path)
    json.dumps(doc)
    with pytest.raises(AttributeError, match="no 'latency_msx'"):
        r.latency_msx
    bare = ek.profile(q, runs=3, threads=1)
    assert bare.accuracy is None and bare.fidelity is None
