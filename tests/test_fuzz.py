"""Fuzzing with hypothesis: real files edgekit wrote (models of each format, a profile result,
a run's sidecar, the shipped recipes and device profiles), mutated (bits flipped, bytes
overwritten, inserted or cut, the file truncated; for JSON, any field replaced by any JSON
value or removed), are fed to the command that reads them. edgekit must answer with an exit
code (0-3) and never raise another exception or hang (each case has a 30 s alarm).

The examples are derandomized, so CI tries the same cases every run; the counts are in
``N``. Run with ``--hypothesis-show-statistics`` to see them per test."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import invoke_cli

REPO = Path(__file__).resolve().parents[1]
N = {"tflite": 400, "onnx": 400, "keras": 100, "h5": 100, "profile": 1000, "sidecar": 500,
     "recipe": 1000, "device": 150}
CASES = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                 suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def files(tmp_path_factory, small_formats) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    for f in small_formats.iterdir():
        shutil.copy(f, d / f.name)
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 100, 50)).save(d / "img.png")
    code, out, err = invoke_cli("profile", d / "m.tflite", "--runs", "2", "--warmup", "0",
                                "--data", "fashion-mnist-sample:test", "--limit", "20", "--json")
    assert code == 0, err
    (d / "profile.json").write_text(json.dumps(pinned(json.loads(out))))
    return d


def pinned(doc: dict) -> dict:
    """A profile result with what differs between runs and machines (timings, memory, the
    CPU, the date, the temp path) set to fixed values. The derandomized fuzzer draws its cases
    from this document, so CI then tries exactly the cases a developer's run tried."""
    doc["model"]["path"] = "m.tflite"
    doc["latency_ms"] = {k: 1.0 if isinstance(v, float) else v
                         for k, v in doc["latency_ms"].items()}
    doc["init_ms"] = 40.0
    doc["memory"] = {k: 50.0 if isinstance(v, float) else v for k, v in doc["memory"].items()}
    doc["device"].update(cpu="CPU", system="Linux")
    doc["provenance"].update(measured="local runner on CPU", date="2026-01-01T00:00:00+00:00")
    # The model is untrained, so profile flags its outputs as degenerate and compare fails on
    # them (exit 1) whatever the mutation; declared usable here so that the fuzzer also
    # reaches compare's passing path (tests/test_user_models.py tests the flag itself).
    doc["accuracy"]["degenerate"] = []
    return doc


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang("no answer within 30 s")


def run_case(*argv, env: dict | None = None) -> int:
    """One fuzz case through the CLI: an exit code, or the exception that escaped it."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(30)
    try:
        code, _, err = invoke_cli(*argv, env=env)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert code in (0, 1, 2, 3), err
    assert "Traceback" not in err
    return code


# --- mutations -------------------------------------------------------------------------------
def byte_mutations(size: int):
    """A list of edits of a file of ``size`` bytes."""
    pos = st.integers(0, max(size - 1, 0))
    edit = st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("set"), pos, st.integers(0, 255)),
        st.tuples(st.just("insert"), pos, st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("cut"), pos, st.integers(1, 4096)),
        st.tuples(st.just("truncate"), pos, st.just(0)),
    )
    return st.lists(edit, min_size=1, max_size=8)


def apply(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, at, arg in edits:
        at = min(at, max(len(buf) - 1, 0))
        if kind == "flip" and buf:
            buf[at] ^= 1 << arg
        elif kind == "set" and buf:
            buf[at] = arg
        elif kind == "insert":
            buf[at:at] = arg
        elif kind == "cut":
            del buf[at:at + arg]
        elif kind == "truncate":
            del buf[at:]
    return bytes(buf)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4)
                    | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=10)


def paths_of(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths_of(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths_of(v, (*prefix, i))


@st.composite
def json_mutations(draw, doc, keep=("schema",)):
    """``doc`` with up to 4 of its fields (at any depth) replaced by any JSON or removed."""
    doc = json.loads(json.dumps(doc))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in paths_of(doc) if p and p[-1] not in keep]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return doc


# --- model loaders ---------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["tflite", "onnx", "keras", "h5"])
def test_model_loaders_survive_mutated_files(files, tmp_path, fmt):
    original = (files / f"m.{fmt}").read_bytes()
    target = tmp_path / f"x.{fmt}"
    tried = []

    @settings(CASES, max_examples=N[fmt])
    @given(edits=byte_mutations(len(original)))
    def case(edits):
        target.write_bytes(apply(original, edits))
        tried.append(run_case("inspect", target, "--json"))
        if fmt in ("tflite", "onnx"):  # the runtime's loader too, as profile and predict use it
            run_case("predict", target, files / "img.png")

    case()
    assert len(tried) == N[fmt]
    assert 2 in tried  # the mutations did reach the error paths


# --- results, sidecars, recipes, device profiles ---------------------------------------------
def test_profile_results_survive_mutation(files, tmp_path):
    base = json.loads((files / "profile.json").read_text())
    target = tmp_path / "new.json"
    tried = []

    @settings(CASES, max_examples=N["profile"])
    @given(doc=json_mutations(base), edits=st.none() | byte_mutations(2000))
    def case(doc, edits):
        text = json.dumps(doc).encode()
        target.write_bytes(apply(text, edits) if edits else text)
        tried.append(run_case("compare", files / "profile.json", target, "--json"))
        run_case("report", target, "--json")

    case()
    assert len(tried) == N["profile"] and {0, 2} <= set(tried)


def test_sidecars_survive_mutation(files, tmp_path):
    side = json.loads((files / "m.tflite.json").read_text())
    shutil.copy(files / "m.tflite", tmp_path / "m.tflite")
    target = tmp_path / "m.tflite.json"
    tried = []

    @settings(CASES, max_examples=N["sidecar"])
    @given(doc=json_mutations(side, keep=("schema", "sha256")))
    def case(doc):
        target.write_text(json.dumps(doc))
        tried.append(run_case("inspect", tmp_path / "m.tflite", "--json"))
        run_case("report", target, "--json")

    case()
    assert len(tried) == N["sidecar"] and {0, 2} <= set(tried)


def test_recipes_survive_mutation(files, tmp_path, monkeypatch):
    recipes = sorted((REPO / "edgekit/catalog/recipes").glob("*.yaml"))
    monkeypatch.chdir(tmp_path)
    shutil.copy(files / "m.keras", tmp_path / "m.keras")
    tried = []

    @settings(CASES, max_examples=N["recipe"])
    @given(data=st.data(), which=st.sampled_from(recipes), edits=byte_mutations(3000))
    def case(data, which, edits):
        target = tmp_path / "r.yaml"
        if data.draw(st.booleans()):  # bytes, or the recipe's fields (YAML stays well-formed)
            target.write_bytes(apply(which.read_bytes(), edits))
        else:
            doc = data.draw(json_mutations(yaml.safe_load(which.read_text()), keep=()))
            target.write_text(yaml.safe_dump(doc))
        command = "sweep" if which.name.endswith("-sweep.yaml") else "run"  # sweep files too
        tried.append(run_case(command, target, "--dry-run", "--runs-dir", tmp_path / "runs"))

    case()
    assert len(tried) == N["recipe"] and {0, 2} <= set(tried)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_device_profiles_survive_mutation(tmp_path):
    catalog = sorted((REPO / "edgekit/catalog/devices").glob("*.yaml"))
    folder = tmp_path / "home" / "devices"
    folder.mkdir(parents=True)
    tried = []

    @settings(CASES, max_examples=N["device"])
    @given(which=st.sampled_from(catalog), edits=byte_mutations(6000))
    def case(which, edits):
        for old in folder.iterdir():
            old.unlink()
        (folder / which.name).write_bytes(apply(which.read_bytes(), edits))
        env = {"EDGEKIT_HOME": str(tmp_path / "home")}
        tried.append(run_case("devices", "show", which.stem, "--json", env=env))
        if tried[-1] == 0:  # a profile that still loads: the cost model must cope with it
            run_case("scale", "--device", which.stem, "--top", "1", "--json", env=env)

    case()
    assert len(tried) == N["device"] and {0, 2} <= set(tried)
