"""The QAT rewrite (edgekit/optimize/qat.py): batch norm folds exactly, the rewritten model
saves and loads, and TFLite converts it to int8 with no calibration data, with the ranges it
learned and the same kernels as post-training int8; the user's path (finetune --qat with a
teacher, quantize to TFLite and ONNX); float islands for HARD_SWISH. Accuracy on full data is
benchmarks/qat.py's."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import once
from user_models import train, user_input


def _ops(data: bytes) -> tuple[Counter, set]:
    """Op kinds of a .tflite, and the dtypes of every op's outputs."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data)
    it.allocate_tensors()
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = [o for o in it._get_ops_details() if o["op_name"] != "DELEGATE"]
    return (Counter(o["op_name"] for o in ops),
            {tensors[i]["dtype"].__name__ for o in ops for i in o["outputs"]})


def test_batch_norm_folds_exactly():
    import keras
    import tensorflow as tf

    from edgekit.optimize.qat import _folded_weights, to_qat

    rng = np.random.default_rng(0)
    inp = keras.Input((12, 12, 3))
    conv = keras.layers.Conv2D(8, 3, use_bias=False)
    dw = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=True)
    bns = [keras.layers.BatchNormalization(epsilon=1e-3) for _ in range(2)]
    x = keras.layers.ReLU(6.0)(bns[0](conv(inp)))
    model = keras.Model(inp, bns[1](dw(x)))
    for bn in bns:
        n = bn.gamma.shape[0]
        bn.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 1, n), rng.normal(0, 1, n),
                        rng.uniform(0.1, 3, n)])
    dw.set_weights([rng.normal(0, 1, dw.kernel.shape), rng.normal(0, 1, 16)])
    images = rng.normal(0, 1, (4, 12, 12, 3)).astype(np.float32)
    a = conv(images)
    k, b = _folded_weights(conv, bns[0])
    folded = tf.nn.conv2d(images, k, 1, "VALID") + b
    np.testing.assert_allclose(folded, bns[0](a, training=False), rtol=1e-4, atol=1e-4)
    h = np.asarray(keras.layers.ReLU(6.0)(bns[0](a, training=False)))
    k, b = _folded_weights(dw, bns[1])
    folded = tf.nn.depthwise_conv2d(h, k, [1, 1, 1, 1], "VALID") + b
    np.testing.assert_allclose(folded, bns[1](dw(h), training=False), rtol=1e-4, atol=1e-4)
    qat = to_qat(model)
    kinds = Counter(type(layer).__name__ for layer in qat.layers)
    assert "BatchNormalization" not in kinds
    assert kinds["QuantConv2D"] == kinds["QuantDepthwiseConv2D"] == 1
    assert kinds["FakeQuant"] == 3  # the input, after the ReLU6 (fused), after the depthwise


@pytest.fixture(scope="module")
def mobilenet_v3_small(shared):
    """A user's keras.applications MobileNetV3Small (Rescaling in the graph, its own head),
    as tests/test_user_models.py trains it."""
    path = shared / "user_mobilenet_v3_small.keras"
    with once(path) as todo:
        if todo:
            train("mobilenet_v3_small", path, size=32)
    return path


def test_a_keras_applications_model_converts_with_its_learned_ranges(mobilenet_v3_small,
                                                                     tmp_path):
    from edgekit.core.artifacts import Artifact
    from edgekit.core.data import load_dataset
    from edgekit.formats.tflite import convert_tflite
    from edgekit.models.load import load_keras
    from edgekit.optimize.qat import is_qat, to_qat

    model = load_keras(mobilenet_v3_small)
    ds = load_dataset("fashion-mnist-sample:train")
    images = user_input(np.concatenate([b for b, _ in ds.batches(256, 32, 32, 3)])[:256],
                        "mobilenet_v3_small")
    qat = to_qat(model)
    for i in range(0, len(images), 64):  # ranges only: no weights change
        qat(images[i:i + 64], training=True)
    path = tmp_path / "qat.keras"
    qat.save(path)
    loaded = load_keras(path)
    assert is_qat(loaded) and not is_qat(model)
    np.testing.assert_array_equal(loaded(images[:8]), qat(images[:8]))

    source = Artifact(path=path, format="keras", meta={})
    data = convert_tflite(source, "int8", None, model=loaded)  # no calibration data
    ptq = convert_tflite(Artifact(path=mobilenet_v3_small, format="keras", meta={}), "int8",
                         lambda: ([images[i:i + 1]] for i in range(50)), model=model)
    qat_ops, qat_types = _ops(data)
    ptq_ops, _ = _ops(ptq)
    assert qat_types == {"int8"}  # every op runs in int8: no float island, no requantize
    assert qat_ops == ptq_ops, (qat_ops, ptq_ops)


def test_finetune_qat_then_quantize_with_no_calibration(trained_keras, tmp_path):
    """The user's path: `finetune --qat`, then `quantize --mode int8` with no --calib; the
    int8 file keeps the QAT model's accuracy on the test split."""
    import json

    from conftest import run_cli

    qat, out = tmp_path / "qat.keras", tmp_path / "qat.tflite"
    doc = json.loads(run_cli("finetune", trained_keras, "--qat", "--data",
                             "fashion-mnist-sample:train", "--epochs", "1", "--lr", "1e-4",
                             "--teacher", trained_keras, "-o", qat, "--json",
                             check=True).stdout)
    record = json.loads(qat.with_name("qat.keras.json").read_text())
    assert "per channel" in json.dumps(record) and doc["path"] == str(qat)
    assert record["stage"]["config"]["teacher"]["path"] == str(trained_keras)  # distilled
    assert record["stage"]["config"]["schedule"] == "cosine"  # --qat's default
    parent = json.loads(Path(f"{trained_keras}.json").read_text())
    assert parent["sha256"] in json.dumps(record)  # the float parent is recorded
    q = json.loads(run_cli("quantize", qat, "--mode", "int8", "-o", out, "--json",
                           check=True).stdout)
    assert "quantization-aware" in json.dumps(q)
    recorded = json.loads(Path(f"{out}.json").read_text())
    assert recorded["stage"]["config"]["qat"]["float_ops"] == []  # every op has its range
    assert recorded["speed_check"]["baseline"] == "fp32"  # timed against its float parent
    r = json.loads(run_cli("profile", out, "--data", "fashion-mnist-sample:test", "--reference",
                           qat, "--runs", "3", "--warmup", "1", "--threads", "1", "--json",
                           check=True).stdout)
    assert r["fidelity"]["meaningful"] and r["reference_accuracy"]["top1"] > 40
    assert abs(r["accuracy"]["top1"] - r["reference_accuracy"]["top1"]) <= 2.0
    onnx_out = tmp_path / "qat.onnx"  # ONNX QDQ with the same learned ranges
    doc = json.loads(run_cli("quantize", qat, "--format", "onnx", "--mode", "int8", "--calib",
                             "fashion-mnist-sample:train", "--calib-size", "50", "-o", onnx_out,
                             "--json", check=True).stdout)
    assert doc["ort_kernels"]["QLinearConv"] > 0 and "Conv" not in doc["ort_kernels"]
    assert doc["fidelity_vs_keras_qat"]["meaningful"]
    assert doc["stage"]["config"]["engine"] == "qat" and onnx_out.stat().st_size < \
        qat.stat().st_size / 2  # int8 weights
    o = json.loads(run_cli("profile", onnx_out, "--data", "fashion-mnist-sample:test",
                           "--reference", qat, "--runs", "3", "--warmup", "1", "--json",
                           check=True).stdout)
    assert abs(o["accuracy"]["top1"] - r["reference_accuracy"]["top1"]) <= 2.0
    # onnxruntime's integer kernels reproduce the QAT model as well as LiteRT's do (int8
    # weights overflowed its u8s8 kernels on x86 without VNNI: 80.8% against 95.4% here)
    assert o["fidelity"]["top1_agreement"] >= r["fidelity"]["top1_agreement"] - 2.0, (
        o["fidelity"], r["fidelity"])
    for args, words in [(("quantize", qat, "--mode", "fp16", "-o", tmp_path / "f.tflite"),
                         "converts to int8 only"),
                        (("quantize", qat, "--format", "onnx", "--mode", "int8", "--target",
                          "tensorrt", "-o", tmp_path / "t.onnx"), "symmetric ones only"),
                        (("finetune", qat, "--qat", "--data", "fashion-mnist-sample:train",
                          "-o", tmp_path / "again.keras"), "already trained with --qat")]:
        proc = run_cli(*args)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr


def test_a_recipe_plans_qat_and_int8_without_calibration(tmp_path):
    """`qat: true` on a recipe's finetune stage is an option like any other (its command,
    and so its cache key); the quantize after it needs no calib."""
    import json

    from conftest import run_cli

    recipe = tmp_path / "r.yaml"
    recipe.write_text("""schema: edgekit.recipe/1
name: qat-plan
zoo: {family: mobilenet_v2, width: 0.35, depth: 0.3, resolution: 32, classes: 10}
datasets: {train: "fashion-mnist-sample:train"}
stages:
  - {id: qat, stage: finetune, data: "@train", epochs: 1, lr: 0.0001, qat: true}
  - {stage: quantize, mode: int8}
""")
    plain = recipe.read_text().replace(", qat: true", "")
    plans = []
    for text in (recipe.read_text(), plain):
        recipe.write_text(text)
        plans.append(json.loads(run_cli("run", recipe, "--dry-run", "--json", "--runs-dir",
                                        tmp_path / "runs", check=True).stdout))
    with_qat, without = ([s for s in p["stages"] if s["stage"] == "finetune"][0] for p in plans)
    assert " --qat " in with_qat["command"] and "--qat" not in without["command"]
    assert plans[0]["problems"] == []


def test_hard_swish_runs_in_a_float_island(mobilenet_v3_small, tmp_path):
    """Issue 23, point 5: XNNPACK has no int8 HARD_SWISH, so `quantize` for the CPU runs each
    one in float between a DEQUANTIZE and a QUANTIZE; predictions stay those of int8."""
    import json

    from conftest import run_cli
    from edgekit.core.data import load_dataset
    from edgekit.formats.islands import float_islands

    out = tmp_path / "q.tflite"
    proc = run_cli("quantize", mobilenet_v3_small, "--mode", "int8", "--calib",
                   "fashion-mnist-sample:train", "--calib-size", "50", "--no-speed-check",
                   "-o", out, check=True)
    shown = proc.stdout + proc.stderr
    assert "in float between int8 ops" in shown and "HARD_SWISH" in shown
    config = json.loads(Path(f"{out}.json").read_text())["stage"]["config"]
    ops, _ = _ops(out.read_bytes())
    assert config["float_islands"] == {"HARD_SWISH": ops["HARD_SWISH"]} and ops["HARD_SWISH"]
    assert ops["DEQUANTIZE"] == ops["QUANTIZE"] == ops["HARD_SWISH"]
    run_cli("quantize", mobilenet_v3_small, "--mode", "int8", "--calib",
            "fashion-mnist-sample:train", "--calib-size", "50", "--no-speed-check",
            "--no-float-islands", "-o", tmp_path / "all.tflite", "--json", check=True)
    all_int8 = (tmp_path / "all.tflite").read_bytes()
    all_ops, types = _ops(all_int8)
    assert "DEQUANTIZE" not in all_ops and types == {"int8"}
    again, moved = float_islands(all_int8)
    assert moved == config["float_islands"] and _ops(again)[0] == ops

    from ai_edge_litert.interpreter import Interpreter

    test = load_dataset("fashion-mnist-sample:test")
    images = user_input(np.concatenate([b for b, _ in test.batches(200, 32, 32, 3)])[:200],
                        "mobilenet_v3_small")

    def top1(data: bytes) -> np.ndarray:
        it = Interpreter(model_content=data)
        it.allocate_tensors()
        i, o = it.get_input_details()[0], it.get_output_details()[0]
        scale, zero = i["quantization"]
        picks = []
        for x in images:
            it.set_tensor(i["index"], np.clip(np.round(x[None] / scale + zero), -128, 127)
                          .astype(np.int8))
            it.invoke()
            picks.append(int(it.get_tensor(o["index"]).argmax()))
        return np.array(picks)

    from edgekit.models.load import load_keras

    floats = np.asarray(load_keras(mobilenet_v3_small).predict(images, verbose=0)).argmax(1)
    island, plain = top1(out.read_bytes()), top1(all_int8)
    assert len(set(floats)) > 3  # a trained model, not a constant one
    # the island computes hard-swish exactly on the int8 values: as close to float as int8
    assert (island == floats).mean() >= (plain == floats).mean() - 0.02


def test_zoo_mobilenet_v3_squeeze_excite_converts_all_int8(tmp_path):
    """edgekit's MobileNetV3 writes its squeeze-excite gate as a hard_sigmoid activation on
    the expand conv: the rewrite splits it as TFLite runs it (relu6(x + 3) / 6, the + 3 folded
    into the bias), so no op is left in float for want of a range."""
    from edgekit import api
    from edgekit.core.artifacts import Artifact
    from edgekit.formats.tflite import convert_tflite, float_ops
    from edgekit.models.load import load_keras
    from edgekit.optimize.qat import to_qat

    path = tmp_path / "v3.keras"
    api.build("mobilenet_v3_large", out=path, width=0.35, resolution=32, classes=10)
    qat = to_qat(load_keras(path))
    images = np.random.default_rng(0).uniform(-1, 1, (64, 32, 32, 3)).astype(np.float32)
    qat(images, training=True)  # ranges from one batch
    qat.save(tmp_path / "qat.keras")
    data = convert_tflite(Artifact(path=tmp_path / "qat.keras", format="keras", meta={}),
                          "int8", None, model=qat)
    assert float_ops(data) == [] and _ops(data)[1] == {"int8"}
