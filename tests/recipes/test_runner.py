"""``edgekit run`` and ``edgekit report`` on a small real recipe: every stage through the real
commands, the stage cache, resuming after Ctrl-C and after a killed process, gates, the report,
--save-recipe, and a dry-run of every shipped recipe."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import EDGEKIT, run_cli

def recipe(folder: Path, epochs: int = 1, calib: int = 50, **gates) -> Path:
    """The shipped Fashion-MNIST demo with a shallower teacher (depth 0.3), its training cut
    short (1 epoch on 300 images; the distillation ``epochs``), ``calib`` calibration images,
    short profiles and ``gates``
    (no accuracy gate by default: models trained that briefly are at chance, and a drop
    between them fails as not meaningful)."""
    from edgekit.recipes.schema import recipe_path

    doc = yaml.safe_load(recipe_path("fashion-mnist-demo").read_text())
    doc["zoo"]["depth"] = 0.3  # a shallower teacher: graph tracing costs per layer
    for stage in doc["stages"]:
        if stage["stage"] == "finetune":
            stage.update(epochs=epochs if stage["id"] == "distilled" else 1, limit=300)
        elif stage["stage"] == "quantize":
            stage.update(calib_size=calib, speed_check=False)
        elif stage["stage"] == "profile":
            stage.update(limit=200, runs=5, warmup=1)
    doc["gates"] = {"max_size_mb": 0.7, "max_latency_ms": 1000, **gates}
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_json(path: Path, runs: Path, *extra: str, check: bool = True) -> dict:
    proc = run_cli("run", path, "--runs-dir", runs, "--json", *extra, check=check)
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    path = recipe(folder)
    doc = run_json(path, folder / "runs")
    return folder, path, doc


STAGES = ["build", "teacher", "teacher-fp32", "student", "distilled", "student-fp32", "int8",
          "profile-teacher", "profile-student", "profile-int8"]


def ran(doc: dict) -> list[str]:
    return [s["id"] for s in doc["stages"] if not s["cached"]]


def test_a_recipe_runs_every_stage(first):
    folder, _, doc = first
    assert doc["status"] == "passed" and doc["schema"] == "edgekit.run/1"
    assert ran(doc) == STAGES
    run_dir = Path(doc["run_dir"])
    assert (folder / "runs" / "latest").resolve() == run_dir
    assert json.loads((run_dir / "run.json").read_text()) == doc
    for s in doc["stages"]:
        out = Path(s["output"]["path"])
        assert out.parent == run_dir and out.name.startswith(f"{s['index']:02d}-{s['id']}")
        assert s["command"].startswith("edgekit ") and s["seconds"] > 0
        if s["stage"] != "profile":  # every model has its sidecar beside it
            side = json.loads(out.with_name(out.name + ".json").read_text())
            assert side["sha256"] == s["output"]["sha256"]
    student = json.loads((run_dir / "03-student.keras.json").read_text())
    assert student["spec"]["width"] < 1.0  # scale chose a thinner model for the 0.7 MB budget
    assert student["spec"]["resolution"] == 48
    distilled = json.loads((run_dir / "04-distilled.keras.json").read_text())
    assert distilled["stage"]["config"]["teacher"]["sha256"] == doc["stages"][1]["output"]["sha256"]
    gates = {g["gate"]: g for g in doc["gates"]}
    assert gates["max_size_mb"]["passed"] and gates["max_size_mb"]["value"] < 1.0
    assert "measured" in gates["max_latency_ms"]["basis"] or "predicted for raspberry-pi-4" \
        in gates["max_latency_ms"]["basis"]


def test_the_stage_is_the_command(first, tmp_path):
    """One execution path: the int8 stage's command, typed by hand, writes the same bytes."""
    _, _, doc = first
    stage = next(s for s in doc["stages"] if s["id"] == "int8")
    argv = stage["command"].split()[1:]
    argv[argv.index("-o") + 1] = str(tmp_path / "by_hand.tflite")
    run_cli(*argv, check=True)
    assert (tmp_path / "by_hand.tflite").read_bytes() == Path(stage["output"]["path"]).read_bytes()


def test_unchanged_is_cached_and_a_change_reruns_what_follows(first):
    folder, path, doc = first
    again = run_json(path, folder / "runs")
    assert again["status"] == "passed" and ran(again) == []
    assert [s["output"]["sha256"] for s in again["stages"]] == \
        [s["output"]["sha256"] for s in doc["stages"]]
    changed = run_json(recipe(folder, calib=60), folder / "runs")
    assert ran(changed) == ["int8", "profile-int8"]


def test_gates_that_fail_exit_1_and_say_why(first):
    folder, _, _ = first
    path = recipe(folder, max_size_mb=0.001)
    proc = run_cli("run", path, "--runs-dir", folder / "runs")
    assert proc.returncode == 1
    assert "1 gate(s) failed: max_size_mb" in proc.stderr and "Traceback" not in proc.stderr
    doc = json.loads((folder / "runs" / "latest" / "run.json").read_text())
    assert doc["status"] == "gates failed" and all(s["cached"] for s in doc["stages"])
    # models trained for one epoch on 300 images are at chance: a drop between them is no pass
    path = recipe(folder, max_accuracy_drop=100)
    proc = run_cli("run", path, "--runs-dir", folder / "runs")
    assert proc.returncode == 1 and "max_accuracy_drop: not meaningful" in proc.stderr
    assert "at chance" in proc.stderr
    gates = {g["gate"]: g for g in json.loads(
        (folder / "runs" / "latest" / "run.json").read_text())["gates"]}
    assert "teacher-fp32 minus int8" in gates["max_accuracy_drop"]["basis"]
    assert gates["max_accuracy_drop"]["value"] <= 100 and not gates["max_accuracy_drop"]["passed"]


def _wait_for(proc, run_json_path: Path, stages_done: int, timeout: float = 300) -> None:
    start = time.time()
    while time.time() - start < timeout:
        if run_json_path.is_file():
            try:
                if len(json.loads(run_json_path.read_text())["stages"]) >= stages_done:
                    return
            except json.JSONDecodeError:
                pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    raise AssertionError("the run did not get that far")


def _interrupt(path: Path, runs: Path, stages_done: int, sig: int) -> tuple[int, str, dict]:
    """Start a run, send ``sig`` a moment after ``stages_done`` stages finished."""
    proc = subprocess.Popen([*EDGEKIT, "run", str(path), "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ}, start_new_session=True)
    _wait_for(proc, runs / "latest" / "run.json", stages_done)
    time.sleep(3)  # inside the next stage
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, json.loads((runs / "latest" / "run.json").read_text())


def _complete_entries(cache: Path) -> list[Path]:
    return [p for p in cache.iterdir() if (p / "stage.json").exists()]


def test_an_interrupted_run_loses_nothing_and_resumes(first, tmp_path):
    """Ctrl-C during the distillation, then kill -9 during the quantization: each time the
    finished stages stay cached, nothing half-made is taken, and the next run resumes."""
    folder, _, _ = first
    runs = tmp_path / "runs"
    shutil.copytree(folder / "runs" / ".cache", runs / ".cache")  # build .. student cached
    path = recipe(tmp_path, epochs=6)  # the distillation onwards is new
    cached = len(_complete_entries(runs / ".cache"))

    code, err, doc = _interrupt(path, runs, 4, signal.SIGINT)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert doc["status"] == "interrupted" and [s["id"] for s in doc["stages"]] == STAGES[:4]
    assert len(_complete_entries(runs / ".cache")) == cached  # the distillation left nothing

    code, err, doc = _interrupt(path, runs, 6, signal.SIGKILL)
    assert code == -signal.SIGKILL and doc["status"] == "running"
    assert [s["id"] for s in doc["stages"]] == STAGES[:6]
    assert [s["cached"] for s in doc["stages"]] == [True] * 4 + [False] * 2

    resumed = run_json(path, runs)
    assert resumed["status"] == "passed"
    # the teacher's profile does not depend on the distillation: it stays cached
    assert ran(resumed) == ["int8", "profile-student", "profile-int8"]


def test_report_html_markdown_and_json(first, tmp_path):
    _, _, doc = first
    run_dir = Path(doc["run_dir"])
    inputs = sorted(run_dir.glob("*.json"))  # run.json, the profile and every sidecar
    proc = run_cli("report", *inputs, "-o", tmp_path / "report.html", check=True)
    page = (tmp_path / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 3 and "Pareto front" in page
    for stage in STAGES[:7]:
        assert f"<td>{stage}" in page
    assert "predicted for raspberry-pi-4" in page and "measured" in page
    run_cli("report", run_dir / "run.json", "-o", tmp_path / "r.md", check=True)
    md = (tmp_path / "r.md").read_text()
    for name in ("pareto", "layers", "stages"):
        png = tmp_path / f"r-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({png.name})" in md
    rep = json.loads(run_cli("report", run_dir / "run.json", "--json", check=True).stdout)
    names = [v["name"] for v in rep["variants"]]
    assert names == STAGES[:7]
    by = {v["name"]: v for v in rep["variants"]}
    int8 = by["int8"]
    assert int8["precision"] == "int8" and int8["profiles"][0]["accuracy"]["n"] == 200
    assert int8["profiles"][0]["fidelity"]["reference"] == "teacher-fp32"
    profiled = [v for v in rep["variants"] if v["profiles"]]
    assert [v["name"] for v in profiled] == ["teacher-fp32", "student-fp32", "int8"]
    lat_acc = [(v["profiles"][0]["latency_p50_ms"], v["profiles"][0]["accuracy"]["top1"])
               for v in profiled]  # ties (models this briefly trained) go to the other end
    fastest = profiled[min(range(len(profiled)), key=lambda i: (lat_acc[i][0], -lat_acc[i][1]))]
    best = profiled[max(range(len(profiled)), key=lambda i: (lat_acc[i][1], -lat_acc[i][0]))]
    assert fastest["pareto"] and best["pareto"]  # the ends of the front are always on it
    assert all(v["predicted"]["device"] == "raspberry-pi-4" for v in rep["variants"])
    assert "wrote" not in proc.stdout  # stdout stays empty without --json


def test_report_refuses_what_it_cannot_read(tmp_path, small_keras):
    (tmp_path / "x.json").write_text('{"schema": "edgekit.compare/1"}')
    (tmp_path / "bad.json").write_text("{")
    shutil.copy(small_keras, tmp_path / "m.keras")  # a sidecar whose stage is not an object
    side = json.loads(Path(f"{small_keras}.json").read_text())
    (tmp_path / "m.keras.json").write_text(json.dumps({**side, "stage": True}))
    for path, message in ((tmp_path / "x.json", "not a run, profile result or artifact"),
                          (tmp_path / "bad.json", "cannot read as JSON"),
                          (tmp_path / "none.json", "cannot read as JSON"),
                          (tmp_path / "m.keras.json", "not a valid edgekit.artifact/1 document "
                                                      "(stage: ")):
        proc = run_cli("report", path)
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("report", tmp_path / "x.json", "-o", tmp_path / "r.pdf")
    assert proc.returncode == 2 and ".html or .md" in proc.stderr


def test_save_recipe_reproduces_the_command(small_keras, tmp_path):
    out, saved = tmp_path / "q.tflite", tmp_path / "recipes" / "q.yaml"
    saved.parent.mkdir()
    run_cli("quantize", small_keras, "--mode", "int8", "--calib", "fashion-mnist-sample:train",
            "--calib-size", "40", "--no-speed-check", "-o", out, "--save-recipe", saved,
            check=True)
    doc = __import__("yaml").safe_load(saved.read_text())
    assert doc["stages"] == [{"stage": "quantize", "mode": "int8", "calib_size": 40,
                              "calib": "fashion-mnist-sample:train", "speed_check": False}]
    assert (saved.parent / doc["model"]).resolve() == Path(small_keras).resolve()
    run = run_json(saved, tmp_path / "runs")
    assert Path(run["stages"][0]["output"]["path"]).read_bytes() == out.read_bytes()
    proc = run_cli("quantize", small_keras, "--mode", "int8", "--save-recipe", saved)
    assert proc.returncode == 2 and "exists" in proc.stderr  # checked before any work


SHIPPED = {  # recipe -> what it needs beside it (made up here: a dry-run reads no content)
    "fashion-mnist-demo": {},
    "mobilenet_v2-pixel7-int8": {"calibration-images/a/x.png": b"\x89PNG"},
    "efficientnet_lite0-jetson-fp16": {"efficientnet_lite0.pth": b"x"},
    "mobilenet_v3_small-rpi4-int8": {"imagenet-val/n01440764/x.png": b"\x89PNG"},
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_recipes_plan_and_name_what_they_miss(name, tmp_path):
    from edgekit.recipes.schema import shipped

    assert sorted(p.stem for p in shipped()) == sorted(SHIPPED)
    args = ["run", name, "--dry-run", "--json", "--runs-dir", tmp_path / "runs"]
    cwd = os.getcwd()
    os.chdir(tmp_path)  # a shipped recipe named without a path reads files from here
    try:
        if SHIPPED[name]:
            proc = run_cli(*args)
            assert proc.returncode == 2 and "the run would fail" in proc.stderr
            assert json.loads(proc.stdout)["problems"]
        for rel, data in SHIPPED[name].items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_bytes(data)
        plan = json.loads(run_cli(*args, check=True).stdout)
    finally:
        os.chdir(cwd)
    assert plan["problems"] == [] and not (tmp_path / "runs").exists()  # wrote nothing
    assert all(r["command"].startswith("edgekit ") for r in plan["stages"])
    assert plan["stages"][-1]["stage"] == "profile"


def test_an_onnx_model_quantizes_to_onnx_in_a_recipe(tmp_path):
    """quantize without --format keeps an ONNX model ONNX: the step's output is .onnx (it
    was .tflite, which quantize refuses for an ONNX model)."""
    (tmp_path / "m.onnx").write_bytes(b"x")  # a dry-run reads no content
    (tmp_path / "r.yaml").write_text(textwrap.dedent("""\
        schema: edgekit.recipe/1
        name: onnx-user
        model: m.onnx
        stages:
          - {id: q, stage: quantize, mode: int8, calib: "fashion-mnist-sample:train"}
          - {stage: profile, data: "fashion-mnist-sample:test"}
        """))
    plan = json.loads(run_cli("run", tmp_path / "r.yaml", "--dry-run", "--json", "--runs-dir",
                              tmp_path / "runs", check=True).stdout)
    quantize = plan["stages"][0]["command"].split()
    assert quantize[-2:-1] == ["-o"] and quantize[-1].endswith("/out.onnx"), quantize


def test_run_lists_and_refuses_bad_input(tmp_path):
    listing = json.loads(run_cli("run", "--list", "--json", check=True).stdout)
    assert {r["name"] for r in listing["recipes"]} == set(SHIPPED)
    proc = run_cli("run", "no-such-recipe")
    assert proc.returncode == 2 and "no shipped recipe of that name" in proc.stderr
    proc = run_cli("run")
    assert proc.returncode == 2 and "edgekit run --list" in proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent("""\
        schema: edgekit.recipe/1
        name: bad
        model: m.keras
        stages:
          - stage: quantize
            mode: int8
            teacher: x
        """))
    proc = run_cli("run", bad)
    assert proc.returncode == 2 and f"{bad}:7: stages.0.teacher: Extra inputs" in proc.stderr


def test_cache_key_follows_content(tmp_path):
    """The key hashes what a stage reads: the input model's and the dataset's bytes."""
    import numpy as np

    from edgekit.recipes.runner import Pipeline

    (tmp_path / "m.keras").write_bytes(b"model-1")
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 8, 8), np.uint8), y=np.array([0, 1]))
    (tmp_path / "r.yaml").write_text(textwrap.dedent("""\
        schema: edgekit.recipe/1
        name: k
        model: m.keras
        stages:
          - {stage: quantize, mode: int8, calib: d.npz}
        """))

    def key() -> str:
        pipe = Pipeline(tmp_path / "r.yaml", tmp_path / "cache")
        return pipe.key_of(pipe.steps[0], {})

    first = key()
    assert key() == first
    (tmp_path / "m.keras").write_bytes(b"model-2")
    second = key()
    np.savez(tmp_path / "d.npz", x=np.ones((2, 8, 8), np.uint8), y=np.array([0, 1]))
    assert len({first, second, key()}) == 3
