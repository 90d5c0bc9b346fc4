"""A model trained with ``finetune --qat``, to ONNX QDQ with the ranges it learned.

tf2onnx exports the model: each activation fake-quant op becomes a QuantizeLinear /
DequantizeLinear pair with the op's range (uint8, zero point as the op nudges it: onnxruntime's
fast x86 path). TensorFlow folds the weights' fake quantization into constants first, so the
weights arrive as float values that already lie on their int8 grid (``q * scale``, per output
channel, scale = max|w| / 127). ``_grid_weights`` stores them as the integers they are, with
a DequantizeLinear, which is what onnxruntime needs to run the layer as an integer kernel
(QLinearConv): no library turns exact fake-quantized constants back into integers, hence the
few lines here. A weight that is not exactly on such a grid is left in float.

The integers are stored as uint8 with zero point 128 (the same real values, exactly), not as
int8: onnxruntime's uint8 x int8 kernels on x86-64 without VNNI (AVX2) add pairs of products
in saturating 16-bit arithmetic (VPMADDUBSW), and full-range QAT weights overflow it. Measured
on an AMD EPYC (AVX2): a QAT MobileNetV2's ONNX agreed with its Keras model on 80% of test
images with int8 weights, 95% with uint8 ones (its TFLite file: 95.4%; onnxruntime without
fused kernels: 99.8%), for 1.18x the time of that 32-px model (1.3-1.4x for MobileNetV2
at 224 px, benchmarks/int8_speed.py). edgekit's post-training ONNX avoids the overflow with
7-bit weights instead (``onnx_quant``); QAT weights keep the grid they were trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..core.artifacts import Artifact
from ..core.errors import BadInput

log = logging.getLogger("edgekit")


def qat_to_onnx(model, opset: int):
    """The QDQ onnx.ModelProto of a loaded QAT Keras model (NHWC input named ``input``)."""
    from ..formats.onnx import keras_to_onnx

    proto = keras_to_onnx(model, opset)
    _grid_weights(proto)
    return proto


def _grid_weights(proto) -> int:
    """Store each Conv / MatMul weight that lies exactly on a symmetric int8 grid (per output
    channel for Conv, per tensor for MatMul) as uint8 (zero point 128) + DequantizeLinear;
    how many were."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    done, nodes = 0, []
    for node in graph.node:
        name = node.input[1] if node.op_type in ("Conv", "MatMul") and len(node.input) > 1 \
            else None
        if name in inits and readers[name] == 1:
            w = numpy_helper.to_array(inits[name]).astype(np.float32)
            axes = tuple(range(1, w.ndim)) if node.op_type == "Conv" else None
            scale = np.maximum(np.abs(w).max(axis=axes), 1e-12) / 127.0
            shaped = scale.reshape(-1, *[1] * (w.ndim - 1)) if axes else scale
            q = np.round(w / shaped)
            if np.abs(q * shaped - w).max() <= 1e-5 * np.abs(w).max():  # on the grid
                graph.initializer.remove(inits[name])
                graph.initializer.extend([
                    numpy_helper.from_array((q + 128).astype(np.uint8), f"{name}_q"),
                    numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
                    numpy_helper.from_array(np.full(scale.shape, 128, np.uint8),
                                            f"{name}_zero")])
                nodes.append(helper.make_node(
                    "DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zero"], [name],
                    name=f"{name}_dequantize", **({"axis": 0} if axes else {})))
                done += 1
        nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(nodes)
    return done


def fused_ops(proto) -> dict[str, int]:
    """How onnxruntime's CPU provider runs the QDQ model: its convolutions and matmuls fused
    into integer kernels (QLinearConv, QGemm, ...) against those left in float."""
    import collections
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgekit-ort-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(proto.SerializeToString(), options,
                             providers=["CPUExecutionProvider"])
        kinds = collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath)
                                    .graph.node)
    return {k: kinds[k] for k in ("QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger",
                                  "Conv", "Gemm", "MatMul") if kinds[k]}


def quantize_qat_onnx(source: Artifact, model, out: Path, target: str, opset: int,
                      calib: str | None, calib_size: int, force: bool, speed_check: bool,
                      threads: int) -> Artifact:
    """``quantize --format onnx`` of a QAT model: no calibration; ``calib``, if given, only
    checks the ONNX model against the Keras one."""
    from ..evaluate.metrics import fidelity
    from ..formats.onnx import run_onnx, write_onnx
    from .qat import RANGES_FROM_TRAINING, float_parent
    from .quantize import calibration_batches

    if target != "cpu":
        raise BadInput(f"{source.path} was trained with --qat in TFLite's scheme (asymmetric "
                       f"activations); TensorRT takes symmetric ones only: quantize its float "
                       f"parent for --target {target}")
    proto = qat_to_onnx(model, opset)
    facts = {"ort_kernels": fused_ops(proto)}
    if {"Conv", "Gemm", "MatMul"} & set(facts["ort_kernels"]):
        log.info("onnxruntime runs some layers in float (no range after them in the model): %s",
                 facts["ort_kernels"])
    if calib:
        from ..models.load import keras_input_hwc

        samples = calibration_batches(source, calib, calib_size, keras_input_hwc(model))
        facts["fidelity_vs_keras_qat"] = fidelity(run_onnx(proto, samples),
                                                  np.asarray(model.predict(samples, verbose=0)))
    else:
        log.info("no --calib: the ONNX model is not compared with the Keras QAT model")
    config = {"engine": "qat", "target": target, "mode": "int8", "opset": opset,
              "qat": {"ranges": RANGES_FROM_TRAINING},
              "scheme": {"format": "QDQ", "weights": "int8 grid, per-channel symmetric (dense: "
                         "per tensor), stored as uint8 with zero point 128 (exact; onnxruntime's "
                         "u8s8 kernels saturate on x86 without VNNI)",
                         "activations": "uint8 per-tensor asymmetric"}}
    art = write_onnx(proto, source, out, force, "quantize", config, "int8", **facts)
    parent = float_parent(source) if speed_check else None
    if parent is not None:
        import onnx

        from ..formats.onnx import float_onnx
        from ..formats.output import undo_on_failure
        from .speed import record_speed

        fproto = float_onnx(parent, "cpu", opset)[0]
        with undo_on_failure(out):
            art = record_speed(art, lambda p: onnx.save(fproto, str(p)), threads)
    return art
