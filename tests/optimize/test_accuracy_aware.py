"""Accuracy-aware quantization: the search over layers kept in float, and real runs."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli

DATA = "fashion-mnist-sample:test"


def _fake(drops: dict[int, float]):
    calls = []

    def attempt(layers):
        calls.append(len(layers))
        return {"k": len(layers), "drop": drops[len(layers)]}
    return attempt, calls


def test_search_doubles_then_bisects_to_the_fewest_layers():
    from edgekit.optimize.accuracy import _search

    ranking = [{"name": f"l{i}"} for i in range(10)]
    attempt, calls = _fake({1: 3.0, 2: 2.0, 4: 1.0, 8: 0.2, 6: 0.4, 5: 0.6, 7: 0.3})
    best = _search(attempt, ranking, 0.5)
    assert best["k"] == 6 and calls == [1, 2, 4, 8, 6, 5]


def test_search_tries_all_layers_then_reports_none():
    from edgekit.optimize.accuracy import _search

    ranking = [{"name": f"l{i}"} for i in range(5)]
    attempt, calls = _fake({1: 3.0, 2: 2.0, 4: 1.0, 5: 0.9})
    assert _search(attempt, ranking, 0.5) is None and calls == [1, 2, 4, 5]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_max_drop_run_records_what_it_did(workdir, trained_keras, fmt):
    """A real run with a limit of 0 points; a 10-image calibration makes plain int8 lose
    accuracy, so the search usually runs. Whatever path it takes, the record must add up."""
    out = workdir / f"aa.{fmt}"
    proc = run_cli("quantize", trained_keras, "--format", fmt, "--mode", "int8", "--calib",
                   "fashion-mnist-sample:train", "--calib-size", "10", "--data", DATA,
                   "--max-drop", "0", "--max-float-layers", "1", "-o", out, "--force", "--json")
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert out.exists() and not list(workdir.glob(".aa.try*"))  # no half-written leftovers
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    rec = meta["accuracy_aware"]
    assert rec["drop"] == pytest.approx(rec["float_top1"] - rec["top1"])
    assert rec["met"] == (rec["drop"] <= 0) == (proc.returncode == 0)
    assert rec["int8_top1"] <= 100 and 1 <= rec["tries"] <= 2 and len(rec["float_layers"]) <= 1
    if rec["int8_top1"] < rec["float_top1"]:  # plain int8 lost accuracy: layers were ranked
        assert rec["ranking"] and rec["tries"] > 1
        assert rec["drop"] <= rec["float_top1"] - rec["int8_top1"] + 1e-6  # never worse than plain
    if rec["float_layers"]:
        assert meta["precision"] == "mixed" and set(rec["float_layers"]) <= {
            r["name"] for r in rec["ranking"]} | set(rec["float_layers"])
        if fmt == "tflite":
            info = json.loads(run_cli("inspect", out, "--json", check=True).stdout)
            assert info["precision"] == "mixed"
        assert rec["latency_cost"]["mixed_ms"] > 0 and rec["latency_cost"]["int8_ms"] > 0
    if fmt == "onnx":  # every node it kept in float is in the graph; weighted ones keep
        import onnx    # float weights (a float node may still read dequantized inputs)

        g = onnx.load(str(out)).graph
        producer = {o: n for n in g.node for o in n.output}
        nodes = {n.name: n for n in g.node}
        for name in meta["stage"]["config"].get("float_nodes", []):
            node = nodes[name]
            if node.op_type in ("Conv", "Gemm", "MatMul") and node.input[1] in producer:
                assert producer[node.input[1]].op_type != "DequantizeLinear", name


@pytest.mark.slow
def test_max_drop_falls_back_to_qat(workdir, trained_keras):
    """PTQ from one calibration image, no float layer allowed, a limit of 0 points: the QAT
    step runs (1 epoch on the sample's train split). The record lists every step and says
    which met the limit; a QAT model that was chosen is kept beside the output, one that was
    not is removed."""
    out = workdir / "aa_qat.tflite"
    qat_model = workdir / "aa_qat_qat.keras"
    proc = run_cli("quantize", trained_keras, "--mode", "int8", "--calib",
                   "fashion-mnist-sample:train", "--calib-size", "1", "--data", DATA,
                   "--max-drop", "0", "--max-float-layers", "0", "--qat-epochs", "1",
                   "--qat-data", "fashion-mnist-sample:train", "--no-speed-check", "-o", out,
                   "--force", "--json")
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    rec = json.loads(out.with_name(out.name + ".json").read_text())["accuracy_aware"]
    steps = [s["step"] for s in rec["steps"]]
    if rec["steps"][0]["drop"] <= 0:  # one image calibrated well enough: nothing more to do
        assert steps == ["ptq"] and rec["met_by"] == "ptq"
        pytest.skip("plain int8 met a limit of 0 points")
    assert steps == ["ptq", "qat"] and rec["float_layers"] == []
    qat = rec["steps"][1]
    assert rec["step"] == ("qat" if qat["drop"] < rec["steps"][0]["drop"] else "ptq")
    assert rec["met_by"] == (rec["step"] if rec["met"] else None)
    assert qat_model.exists() == (rec["step"] == "qat")
    if rec["step"] == "qat":
        assert rec["qat"] == {"epochs": 1, "model": str(qat_model)}
        assert rec["top1"] == qat["top1"]
        trained = json.loads(qat_model.with_name(qat_model.name + ".json").read_text())
        assert trained["stage"]["config"]["teacher"]["path"] == str(trained_keras)  # distilled


def test_qat_step_needs_its_data_and_a_limit(tmp_path, trained_keras):
    for args, words in [(("--qat-epochs", "1"), "step of --max-drop"),
                        (("--data", DATA, "--max-drop", "1", "--qat-epochs", "1"),
                         "--qat-data TRAIN"),
                        (("--data", DATA, "--max-drop", "1", "--qat-epochs", "1", "--qat-data",
                          DATA, "--keep-float", "x"), "cannot --keep-float")]:
        proc = run_cli("quantize", trained_keras, "--mode", "int8", "--calib",
                       "fashion-mnist-sample:train", *args, "-o", tmp_path / "q.tflite")
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert not (tmp_path / "q.tflite").exists()
