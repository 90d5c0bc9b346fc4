"""ONNX export (tf2onnx + onnxslim, checked against Keras) and int8 quantization per target,
on the model trained on the committed Fashion-MNIST sample, run by the real onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import drop_tolerance, profile_json, run_cli

pytestmark = pytest.mark.slow
DATA = "fashion-mnist-sample:test"
CALIB = ["--calib", "fashion-mnist-sample:train", "--calib-size", "200"]


def _profile(path, *extra):
    return profile_json(path, *extra, runs=3)


@pytest.fixture(scope="module")
def float_result(trained_keras):
    return _profile(trained_keras)


@pytest.fixture(scope="module")
def float_top1(float_result):
    return float_result["accuracy"]["top1"]


def _close_to_float(r, float_result):
    drop = float_result["accuracy"]["top1"] - r["accuracy"]["top1"]
    assert drop <= drop_tolerance(float_result, r), (drop, drop_tolerance(float_result, r))


def _zero_points(path):
    """(activation zero-point dtypes, weight zero-point dtypes, all zero points zero?) of a
    QDQ model: activations are what QuantizeLinear nodes quantize at run time, weights what
    the DequantizeLinear nodes feeding Conv/Gemm/MatMul weights hold."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    dtype = lambda name: onnx.helper.tensor_dtype_to_np_dtype(inits[name].data_type).name  # noqa: E731
    acts = {dtype(n.input[2]) for n in g.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits and len(n.input) > 2}
    weights = {dtype(producer[n.input[1]].input[2]) for n in g.node
               if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] in producer
               and producer[n.input[1]].op_type == "DequantizeLinear"}
    all_zero = not any(numpy_helper.to_array(inits[n.input[2]]).any() for n in g.node
                       if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2)
    return acts, weights, all_zero


def _largest_weights(path) -> dict[str, int]:
    """The largest |q| of the int8 weights (constants that DequantizeLinear nodes read) of
    depthwise convolutions and of the other layers."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(path)).graph
    inits = {i.name: i for i in g.initializer}
    reader = {i: n for n in g.node for i in n.input}
    out = {"depthwise": 0, "other": 0}
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits \
                and inits[n.input[0]].data_type == onnx.TensorProto.INT8:
            groups = [a.i for a in reader[n.output[0]].attribute if a.name == "group"]
            kind = "depthwise" if groups and groups[0] > 1 else "other"
            q = int(np.abs(numpy_helper.to_array(inits[n.input[0]]).astype(int)).max())
            out[kind] = max(out[kind], q)
    return out


def _kernels_agree_with_graph(path, n: int = 500) -> float:
    """Top-1 agreement (%) on test images between onnxruntime running the QDQ file with its
    fused integer kernels (QLinearConv, ...) and running the same graph node by node (no graph
    optimisation): the kernels must compute what the graph says. Rounding alone gave 98-99.9%
    here; full-range int8 weights on an x86 CPU without VNNI, whose u8s8 kernels saturate,
    gave 80%."""
    import onnxruntime as ort

    from edgekit.core.artifacts import open_artifact
    from edgekit.optimize.onnx_quant import onnx_calibration
    from edgekit.runtime.profiling import input_spec

    art = open_artifact(path)
    shape, nchw = input_spec(art)  # NHWC, and whether the file takes NCHW
    x = onnx_calibration(art, DATA, n, tuple(shape[1:]), nchw)
    top1 = []
    for level in (ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_DISABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        top1.append(sess.run(None, {sess.get_inputs()[0].name: x})[0].argmax(1))
    return float((top1[0] == top1[1]).mean() * 100)


def test_export_cpu_matches_keras_and_profiles(workdir, trained_keras, float_top1):
    out = workdir / "exp_cpu.onnx"
    doc = json.loads(run_cli("export", trained_keras, "--format", "onnx", "--opset", "13", "-o", out,
                             "--json", check=True).stdout)
    assert doc["input"]["shape"] == [None, 32, 32, 3] and doc["layout"] == "NHWC"
    assert doc["opset"] == 13 and doc["check"]["max_abs_diff_vs_keras"] < 1e-4
    import onnx
    assert onnx.load(str(out)).graph.input[0].name == "input"
    r = _profile(out, "--reference", trained_keras)
    assert r["accuracy"]["top1"] == pytest.approx(float_top1, abs=0.34)
    assert r["fidelity"]["top1_agreement"] >= 99.6


def test_export_jetson_is_nchw_static_with_trtexec_command(workdir, trained_keras, float_top1):
    out = workdir / "exp_jetson.onnx"
    doc = json.loads(run_cli("export", trained_keras, "--format", "onnx", "--target", "jetson",
                             "-o", out, "--json", check=True).stdout)
    assert doc["input"]["shape"] == [1, 3, 32, 32] and doc["layout"] == "NCHW"
    assert doc["trtexec"]["fp16"].split() == [
        "trtexec", "--onnx=exp_jetson.onnx", "--iterations=200", "--warmUp=500", "--duration=0",
        "--avgRuns=1", "--fp16", "--saveEngine=exp_jetson_fp16.engine"]
    info = json.loads(run_cli("inspect", out, "--check", "tensorrt", "--json", check=True).stdout)
    assert info["checks"]["tensorrt"]["unsupported"] == []
    r = _profile(out)  # the profiler feeds NCHW itself
    assert r["accuracy"]["top1"] == pytest.approx(float_top1, abs=0.34)


def test_export_bad_options_exit_2(workdir, trained_keras, trained_int8):
    cases = [("--format", "onnx", "--opset", "12"), ("--format", "onnx", "--target", "gpu"),
             ("--format", "tflite", "--opset", "15"), ("--format", "onnx", "--nchw", "--target", "x")]
    for extra in cases:
        proc = run_cli("export", trained_keras, *extra, "-o", workdir / "bad.onnx", "--force")
        assert proc.returncode == 2, (extra, proc.stderr)
        assert "Traceback" not in proc.stderr
    proc = run_cli("export", trained_int8, "--format", "onnx", "-o", workdir / "bad.onnx")
    assert proc.returncode == 2 and "needs a float Keras model" in proc.stderr
    assert not (workdir / "bad.onnx").exists()


def test_quantize_cpu_is_u8s8_and_runs_faithfully(workdir, trained_keras, float_result):
    out = workdir / "q_cpu.onnx"
    doc = json.loads(run_cli("quantize", trained_keras, "--format", "onnx", "--mode", "int8",
                             *CALIB, "-o", out, "--json", check=True).stdout)
    acts, weights, _ = _zero_points(out)
    assert acts == {"uint8"} and weights == {"int8"}  # U8S8: onnxruntime's fast CPU path
    assert doc["stage"]["config"]["scheme"]["activations"].startswith("uint8")
    assert "7-bit" in doc["stage"]["config"]["scheme"]["weights"]
    assert _largest_weights(out) == {"depthwise": 64, "other": 64}
    assert _kernels_agree_with_graph(out) >= 95
    # the fixture model is only ~50% accurate (one minute of training): many near-ties
    assert doc["fidelity_on_calibration"]["top1_agreement"] >= 75
    sc = doc["speed_check"]  # measured here, both sides in one run
    assert sc["candidate_ms"] > 0 and sc["baseline_ms"] > 0 and sc["threads"] == 1
    assert sc["speedup"] == pytest.approx(sc["baseline_ms"] / sc["candidate_ms"], rel=0.01)
    r = _profile(out, "--reference", trained_keras)
    _close_to_float(r, float_result)
    assert r["fidelity"]["top1_agreement"] >= 80  # as for TFLite int8 (test_formats)


def test_quantize_tensorrt_is_symmetric_int8_nchw(workdir, trained_keras, float_result):
    out = workdir / "q_trt.onnx"
    doc = json.loads(run_cli("quantize", trained_keras, "--format", "onnx", "--mode", "int8",
                             "--target", "tensorrt", *CALIB, "-o", out, "--json",
                             check=True).stdout)
    acts, weights, all_zero = _zero_points(out)
    assert acts == {"int8"} and weights == {"int8"} and all_zero  # TensorRT: zero point 0
    assert _largest_weights(out)["other"] == 127  # full range: TensorRT's kernels do not saturate
    assert doc["input"]["shape"] == [1, 3, 32, 32] and doc["speed_check"] is None
    assert doc["trtexec"]["int8"].endswith("--int8 --fp16 --saveEngine=q_trt_int8.engine")
    info = json.loads(run_cli("inspect", out, "--check", "tensorrt", "--json", check=True).stdout)
    assert info["checks"]["tensorrt"]["unsupported"] == []
    r = _profile(out)
    _close_to_float(r, float_result)


def test_quantize_nncf_engine_runs_on_the_fast_path(workdir, trained_keras, float_result):
    out = workdir / "q_nncf.onnx"
    run_cli("quantize", trained_keras, "--format", "onnx", "--mode", "int8", "--engine", "nncf",
            *CALIB, "--no-speed-check", "-o", out, check=True)
    acts, weights, _ = _zero_points(out)
    assert acts == {"uint8"} and weights == {"int8"}
    # NNCF's overflow fix leaves depthwise weights full range; the check below shows that
    # onnxruntime's depthwise kernels still compute them as the graph says
    assert _largest_weights(out)["other"] == 64 and _kernels_agree_with_graph(out) >= 95
    r = _profile(out)
    _close_to_float(r, float_result)
    proc = run_cli("quantize", trained_keras, "--format", "onnx", "--mode", "int8", "--engine",
                   "nncf", "--target", "tensorrt", *CALIB, "-o", workdir / "x.onnx")
    assert proc.returncode == 2 and "symmetric" in proc.stderr


def test_profile_warns_where_the_cpu_may_saturate_full_range_weights(workdir, trained_keras):
    """A user's ONNX file quantized by onnxruntime with full-range int8 weights: on an x86 CPU
    without VNNI, profile says its kernels may saturate them; edgekit's own 7-bit file and
    any file on another CPU get no such note."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from edgekit.core.artifacts import open_artifact
    from edgekit.formats.onnx import full_range_weights
    from edgekit.optimize.onnx_quant import _reader, onnx_calibration
    from edgekit.runtime.harness import x86_without_vnni

    fp32, theirs = workdir / "user_fp32.onnx", workdir / "user_full_range_int8.onnx"
    run_cli("export", trained_keras, "--format", "onnx", "-o", fp32, check=True)
    x = onnx_calibration(open_artifact(fp32), "fashion-mnist-sample:train", 50, (32, 32, 3), False)
    quantize_static(fp32, theirs, _reader(x, "input", None), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    layers = full_range_weights(onnx.load(str(theirs)))
    assert len(layers) > 10  # the pointwise convs and the classifier, not the depthwise ones
    proc = run_cli("profile", theirs, "--runs", "3", "--warmup", "1", "--json", check=True)
    risk = json.loads(proc.stdout).get("int8_overflow_risk")
    if x86_without_vnni():  # as on the machines this suite was written on
        assert risk["layers"] == len(layers) and "x64quantprecision" in risk["remedy"]
        assert "saturate" in proc.stderr
    else:
        assert risk is None
    ours = workdir / "q_ours_7bit.onnx"
    run_cli("quantize", trained_keras, "--format", "onnx", "--mode", "int8", *CALIB,
            "--no-speed-check", "-o", ours, check=True)
    assert full_range_weights(onnx.load(str(ours))) == []
    doc = json.loads(run_cli("profile", ours, "--runs", "3", "--warmup", "1", "--json",
                             check=True).stdout)
    assert "int8_overflow_risk" not in doc


def test_full_range_weights_finds_the_layers_that_can_saturate(tmp_path):
    """Grouped convs count (onnxruntime runs them as GEMMs), depthwise ones and layers whose
    input is float (weight-only dequantization: no integer kernel) do not; weights in external
    data are read from beside the file."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.formats.onnx import full_range_weights

    def weight(name, shape, top):
        q = np.full(shape, top, np.int8)
        return [numpy_helper.from_array(q, f"{name}_q"),
                numpy_helper.from_array(np.float32(0.01), f"{name}_s"),
                numpy_helper.from_array(np.int8(0), f"{name}_z")]

    init = [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(0), "z"),
            *weight("grouped", (8, 2, 1, 1), 100), *weight("dw", (8, 1, 3, 3), 100),
            *weight("small", (8, 8, 1, 1), 64), *weight("floatin", (8, 8, 1, 1), 100)]
    init.append(numpy_helper.from_array(np.ones((8, 3, 1, 1), np.float32), "widen"))
    nodes = [helper.make_node("Conv", ["image", "widen"], ["x"]),  # float, 3 -> 8 channels
             helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])]
    for name, group in (("grouped", 4), ("dw", 8), ("small", 1), ("floatin", 1)):
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"],
                                      [f"{name}_w"]))
        nodes.append(helper.make_node("Conv", ["x" if name == "floatin" else "xd", f"{name}_w"],
                                      [f"{name}_y"], name=name, group=group,
                                      pads=[1, 1, 1, 1] if name == "dw" else [0, 0, 0, 0]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
                                  "image", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info(f"{n}_y", TensorProto.FLOAT, None)
                               for n in ("grouped", "dw", "small", "floatin")], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    assert full_range_weights(model) == ["grouped"]
    path = tmp_path / "ext" / "m.onnx"
    path.parent.mkdir()
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="m.data", size_threshold=0)
    external = onnx.load(str(path), load_external_data=False)
    assert full_range_weights(external, str(path.parent)) == ["grouped"]
    proc = run_cli("profile", path, "--runs", "2", "--warmup", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    from edgekit.runtime.harness import x86_without_vnni

    risk = json.loads(proc.stdout).get("int8_overflow_risk")
    assert (risk or {}).get("first") == ("grouped" if x86_without_vnni() else None)


def test_int8_activations_rewritten_to_uint8_exactly():
    """NNCF's int8 activations become uint8 with zero point + 128: the same real values."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.optimize.onnx_quant import activations_to_uint8

    init = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
            numpy_helper.from_array(np.array(-7, np.int8), "zq"),
            numpy_helper.from_array(np.array(-7, np.int8), "zd")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zq"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "zd"], ["d"]),
             helper.make_node("Relu", ["d"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])], init,
                              value_info=[helper.make_tensor_value_info("q", TensorProto.INT8, [64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.linspace(-8, 8, 64, dtype=np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]

    before = run(model)
    after_model = activations_to_uint8(onnx.load_from_string(model.SerializeToString()))
    zps = {i.name: i.data_type for i in after_model.graph.initializer}
    assert zps["zq"] == zps["zd"] == TensorProto.UINT8
    np.testing.assert_array_equal(run(after_model), before)


def test_quantize_bad_options_exit_2(workdir, trained_keras):
    base = ["quantize", trained_keras, "-o", workdir / "bad_q.onnx", "--force"]
    for extra, msg in [(["--format", "onnx", "--mode", "fp16", *CALIB], "--mode"),
                       (["--format", "onnx", "--mode", "int8"], "--calib"),
                       (["--format", "onnx", "--mode", "int8", "--engine", "x", *CALIB], "--engine"),
                       (["--format", "tflite", "--mode", "int8", "--target", "tensorrt",
                         *CALIB], "--target"),
                       (["--mode", "int8", "--max-drop", "1", *CALIB], "--data"),
                       (["--mode", "int8", "--max-drop", "-1", "--data", DATA, *CALIB], ">= 0")]:
        proc = run_cli(*base, *extra)
        assert proc.returncode == 2 and msg in proc.stderr, (extra, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_gpu_provider_refused_where_onnxruntime_has_none(workdir, trained_keras, trained_int8):
    """This machine's onnxruntime has no CUDA provider: a real absence, reported (exit 3)
    instead of onnxruntime's silent fall-back to the CPU."""
    out = workdir / "exp_jetson.onnx"
    if not out.exists():
        run_cli("export", trained_keras, "--format", "onnx", "--target", "jetson", "-o", out,
                check=True)
    import onnxruntime as ort
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has onnxruntime-gpu")
    proc = run_cli("profile", out, "--provider", "cuda", "--runs", "2")
    assert proc.returncode == 3 and "no CUDAExecutionProvider" in proc.stderr
    proc = run_cli("profile", trained_int8, "--provider", "tensorrt", "--runs", "2")
    assert proc.returncode == 2 and "applies to .onnx models" in proc.stderr
    r = json.loads(run_cli("profile", out, "--runs", "2", "--json", check=True).stdout)
    assert r["provenance"]["execution_providers"] == ["CPUExecutionProvider"]


def test_conversions_name_nodes_the_same_way(trained_keras):
    """Node exclusion names nodes: tf2onnx's generated names must not drift between
    conversions in one process (they come from a process-wide counter)."""
    from edgekit.formats.onnx import keras_to_onnx
    from edgekit.models.load import load_keras

    model = load_keras(trained_keras)
    names = [[n.name for n in keras_to_onnx(model).graph.node] for _ in range(2)]
    assert names[0] == names[1] and any("__" in n for n in names[0])


def test_unknown_keep_float_node_exits_2(workdir, trained_keras):
    proc = run_cli("quantize", trained_keras, "--format", "onnx", "--mode", "int8", *CALIB,
                   "--keep-float", "no_such_node", "-o", workdir / "kf.onnx", "--force")
    assert proc.returncode == 2 and "no node named 'no_such_node'" in proc.stderr
