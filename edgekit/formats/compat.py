"""Will the runtime really run this model where you think it will? Op-by-op checks.

TensorFlow 2.21's ``Analyzer(gpu_compatibility=True)`` calls everything compatible,
so edgekit checks each op and its parameters itself, against rules transcribed (as the data
below) from the runtimes' own source:

- ``gpu``: TFLite GPU delegate. TensorFlow ``tensorflow/lite/tools/versioning/
  gpu_compatibility.cc`` (``CheckGpuDelegateCompatibility``) for the per-op rules, and
  ``tensorflow/lite/delegates/gpu/common/model_builder.cc`` (``NewOperationParser``,
  ``CheckMaxSupportedOpVersion``, ``IsAllAllowedTensors``) for the ops the delegate really
  parses, their highest op version, rank <= 4 and tensor types. The delegate runs only its
  largest supported partition (``max_delegated_partitions`` = 1, ``delegate_options.cc``),
  so ops outside it fall back to the CPU too.
- ``xnnpack``: XNNPACK's int8 (QS8) coverage, ``tensorflow/lite/delegates/xnnpack/
  xnnpack_delegate.cc`` (``VisitNode``, ``CheckTensorQInt8OrQUInt8Type``,
  ``ConvertActivationToOutputRange``): int8 ops it does not take run on TFLite's reference
  kernels, several times slower.
- ``tensorrt``: ONNX for TensorRT, onnx-tensorrt ``docs/operators.md`` (TensorRT 10) and
  ``onnxOpImporters.cpp`` (``QuantDequantLinearHelper``: int8 only, zero point 0, per-tensor
  activations), plus static shapes for a single engine without optimization profiles.

Each check returns the unsupported ops with the reason and the share of the model's MACs that
would run elsewhere (MACs from ``edgekit.evaluate.analyze``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import BadInput

CHECKS = {"gpu": "tflite", "xnnpack": "tflite", "tensorrt": "onnx"}
_GPU_ACTS = {0, 1, 2, 3, 4}  # NONE, RELU, RELU_N1_TO_1, RELU6, TANH (SIGMOID: no TFLite enum)
_XNN_ACTS = {0, 1, 2, 3}  # XNNPACK ConvertActivationToOutputRange: no TANH / SIGN_BIT
_FLOATS = {0, 1}  # FLOAT32, FLOAT16
_GPU_TYPES = {0, 1, 3, 9}  # + UINT8 and INT8: quantized models (ENABLE_QUANT is the default)
_UNARY = ["ABS", "COS", "ELU", "EXP", "FLOOR", "GELU", "LOG", "LOGISTIC", "NEG", "RSQRT",
          "SIGN", "SIN", "SQRT", "SQUARE", "TANH"]
_BINARY = ["DIV", "FLOOR_DIV", "FLOOR_MOD", "MAXIMUM", "MINIMUM", "POW", "SQUARED_DIFFERENCE",
           "SUB"]
# op -> highest op version the GPU delegate parses (model_builder.cc); 99: no version check
GPU_OPS: dict[str, int] = {
    "ADD": 2, "ADD_N": 2, "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "BATCH_MATMUL": 99,
    "CAST": 99, "CONCATENATION": 2, "CONV_2D": 6, "CUMSUM": 1, "DENSIFY": 1,
    "DEPTHWISE_CONV_2D": 6, "DEPTH_TO_SPACE": 99, "SPACE_TO_DEPTH": 2, "DEQUANTIZE": 3,
    "FULLY_CONNECTED": 9, "GATHER": 1, "HARD_SWISH": 99, "LEAKY_RELU": 2, "MEAN": 99,
    "MUL": 3, "ONE_HOT": 1, "PACK": 99, "PAD": 2, "PADV2": 2, "MIRROR_PAD": 2, "PRELU": 1,
    "QUANTIZE": 2, "REDUCE_MAX": 99, "REDUCE_MIN": 99, "REDUCE_PROD": 99, "SUM": 99,
    "RELU": 2, "RELU6": 2, "RELU_N1_TO_1": 2, "RESHAPE": 1, "RESIZE_BILINEAR": 3,
    "RESIZE_NEAREST_NEIGHBOR": 3, "SELECT": 1, "SELECT_V2": 1, "SLICE": 2, "SOFTMAX": 2,
    "SPLIT": 99, "SPLIT_V": 99, "STRIDED_SLICE": 4, "TILE": 99, "TRANSPOSE": 4,
    "TRANSPOSE_CONV": 3, "UNPACK": 99, **{op: 2 for op in _UNARY + _BINARY}}
GPU_ACT_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MUL",
               "SUB", "DIV"}
GPU_ONE_RUNTIME_INPUT = {"RESHAPE", "TILE", "TRANSPOSE", "PAD", "PADV2", "MIRROR_PAD",
                         "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "MEAN", "SUM",
                         "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", *_UNARY}
# ops XNNPACK delegates with int8 tensors; the rest run on TFLite's built-in kernels
XNN_INT8_OPS = {"ADD", "SUB", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
                "TRANSPOSE_CONV", "MAX_POOL_2D", "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN",
                "PAD", "RESHAPE", "RESIZE_BILINEAR", "CONCATENATION", "SPLIT", "SLICE",
                "STRIDED_SLICE", "TRANSPOSE", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "LOGISTIC",
                "TANH", "ELU", "LEAKY_RELU", "QUANTIZE", "DEQUANTIZE", "BATCH_MATMUL"}
XNN_WEIGHT_AXIS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}
# ONNX ops TensorRT 10 imports (onnx-tensorrt docs/operators.md), those a classifier uses
TRT_OPS = {"Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant",
           "Conv", "ConvTranspose", "DequantizeLinear", "Div", "Dropout", "Elu", "Erf", "Exp",
           "Expand", "Flatten", "Gather", "Gemm", "GlobalAveragePool", "GlobalMaxPool",
           "HardSigmoid", "HardSwish", "Identity", "LeakyRelu", "MatMul", "Max", "MaxPool",
           "Min", "Mul", "Pad", "PRelu", "QuantizeLinear", "ReduceMax", "ReduceMean",
           "ReduceSum", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax",
           "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze"}
TRT_REJECTS = {"QLinearConv": "operator-oriented int8: TensorRT takes QDQ only",
               "QLinearMatMul": "operator-oriented int8: TensorRT takes QDQ only",
               "ConvInteger": "operator-oriented int8: TensorRT takes QDQ only",
               "MatMulInteger": "operator-oriented int8: TensorRT takes QDQ only",
               "DynamicQuantizeLinear": "dynamic quantization is not supported by TensorRT"}


def check(path: str | Path, fmt: str, which: str) -> dict[str, Any]:
    """Run check ``which`` (gpu | xnnpack | tensorrt) on a .tflite or .onnx file."""
    if which not in CHECKS:
        raise BadInput(f"unknown check '{which}' (known: {', '.join(CHECKS)})")
    if CHECKS[which] != fmt:
        raise BadInput(f"--check {which} applies to .{CHECKS[which]} models, not {fmt} "
                       f"(export or quantize to {CHECKS[which]} first)")
    from ..evaluate.analyze import analyze

    macs = {layer["name"]: layer["macs"] for layer in analyze(path, fmt)["layers"]}
    ops = _tflite_ops(path) if fmt == "tflite" else None
    result = {"gpu": lambda: _gpu(ops), "xnnpack": lambda: _xnnpack(ops),
              "tensorrt": lambda: _tensorrt(path)}[which]()
    total = sum(macs.values()) or 1
    bad = {u["name"] for u in result["unsupported"]}
    result["unsupported_macs_share"] = sum(m for n, m in macs.items() if n in bad) / total
    if "partition" in result:  # ops outside the one delegated partition run on the CPU too
        inside = set(result["partition"].pop("names"))
        result["cpu_macs_share"] = sum(m for n, m in macs.items() if n not in inside) / total
    return {"check": which, **result}


# --------------------------------------------------------------------------- TFLite
def _tflite_ops(path) -> list[dict]:
    """Every op of the main subgraph with its code, version, options and tensors."""
    from ai_edge_litert import schema_py_generated as schema

    buf = Path(path).read_bytes()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]

    def tensor(i: int) -> dict | None:
        if i < 0:
            return None
        t = graph.tensors[i]
        buffer = model.buffers[t.buffer] if t.buffer < len(model.buffers) else None
        q = t.quantization
        scales = [] if q is None or q.scale is None else list(q.scale)
        zps = [] if q is None or q.zeroPoint is None else list(q.zeroPoint)
        return {"name": t.name.decode(), "shape": [] if t.shape is None else [int(d) for d in t.shape],
                "type": t.type, "const": buffer is not None and (
                    (buffer.data is not None and len(buffer.data) > 0) or getattr(buffer, "offset", 0) > 1),
                "scales": scales, "zero_points": zps, "axis": 0 if q is None else q.quantizedDimension}

    out = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        if name == "CUSTOM" and code.customCode:
            name = f"CUSTOM:{code.customCode.decode()}"
        ins = [tensor(i) for i in op.inputs]
        outs = [tensor(i) for i in op.outputs]
        out.append({"op": name, "version": code.version, "inputs": ins, "outputs": outs,
                    "options": vars(op.builtinOptions) if op.builtinOptions is not None else {},
                    "name": outs[0]["name"] if outs else name})
    return out


def _gpu_reason(o: dict) -> str | None:
    op, opts = o["op"], o["options"]
    ins = [t for t in o["inputs"] if t is not None]
    runtime = [t for t in ins if not t["const"]]
    if op not in GPU_OPS:
        return "not supported by the GPU delegate"
    if o["version"] > GPU_OPS[op]:
        return f"op version {o['version']} > {GPU_OPS[op]}, the highest the delegate parses"
    for t in ins + o["outputs"]:
        if len(t["shape"]) > 4:
            return f"tensor {t['name']} has rank {len(t['shape'])}; the delegate takes at most 4"
        if not t["const"] and t["type"] not in _GPU_TYPES:
            return f"tensor {t['name']} has a type the delegate does not take (TensorType {t['type']})"
    act = opts.get("fusedActivationFunction", 0)
    if op in GPU_ACT_OPS and act not in _GPU_ACTS:
        return f"fused activation {act} is not supported"
    if op == "DEPTHWISE_CONV_2D":
        if opts.get("depthMultiplier", 1) != 1 and ins[0]["shape"][-1:] != [1]:
            return "depth multiplier > 1 is supported only for single-channel input"
    if op in ("PAD", "PADV2", "MIRROR_PAD") and len(ins) > 1 and ins[1]["shape"] not in ([4, 2], [3, 2]):
        return f"paddings of shape {ins[1]['shape']}; the delegate takes [4, 2] or [3, 2]"
    if op == "MIRROR_PAD" and opts.get("mode", 0) != 0:
        return "only REFLECT mirror padding is supported"
    if op == "SOFTMAX" and abs(opts.get("beta", 1.0) - 1.0) > 1e-6:
        return f"softmax beta {opts.get('beta')} != 1"
    if op == "STRIDED_SLICE":
        if any(opts.get(k, 0) for k in ("ellipsisMask", "newAxisMask", "shrinkAxisMask")):
            return "ellipsis / new-axis / shrink-axis masks are not supported"
        if len(ins[0]["shape"]) not in (3, 4):
            return "input rank must be 3 or 4"
    if op in GPU_ONE_RUNTIME_INPUT and len(runtime) != 1:
        return f"needs exactly one non-constant input (has {len(runtime)}); shapes/axes must be constant"
    if op in ("ADD", "MUL") and len(ins) != 2:
        return f"takes exactly 2 inputs (has {len(ins)})"
    if op in _BINARY and len(runtime) == 0:
        return "needs at least one non-constant input"
    if op == "FULLY_CONNECTED" and (opts.get("weightsFormat", 0) != 0 or ins[0]["const"]):
        return "shuffled weights or a constant input are not supported"
    return None


def _gpu(ops: list[dict]) -> dict:
    unsupported, runs, current = [], [], []
    for o in ops:  # execution order; consecutive supported ops form one partition
        reason = _gpu_reason(o)
        if reason:
            unsupported.append({"op": o["op"], "name": o["name"], "reason": reason})
            if current:
                runs.append(current)
            current = []
        else:
            current.append(o["name"])
    if current:
        runs.append(current)
    largest = max(runs, key=len) if runs else []
    notes = []
    if any(t["type"] in (3, 9) for o in ops for t in o["inputs"] if t and not t["const"]):
        notes.append("int8 model: the GPU delegate dequantizes and computes in float "
                     "(fake-quant); export fp16 for the GPU (edgekit export --target gpu)")
    if len(runs) > 1:
        notes.append(f"{len(runs)} supported partitions; the delegate runs only the largest "
                     f"({len(largest)} of {len(ops)} ops) by default")
    return {"source": "tensorflow/lite/tools/versioning/gpu_compatibility.cc + "
                      "delegates/gpu/common/model_builder.cc",
            "ops_checked": len(ops), "unsupported": unsupported, "notes": notes,
            "partition": {"count": len(runs), "delegated_ops": len(largest), "names": largest}}


def _xnnpack(ops: list[dict]) -> dict:
    int8 = [o for o in ops if any(t and not t["const"] and t["type"] == 9
                                  for t in o["inputs"] + o["outputs"])]
    unsupported, notes = [], []
    if not int8:
        notes.append("no int8 tensors: this check covers XNNPACK's int8 path; float models "
                     "run on XNNPACK by default")
    for o in int8:
        reason = _xnn_reason(o)
        if reason:
            unsupported.append({"op": o["op"], "name": o["name"], "reason": reason})
    return {"source": "tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc",
            "ops_checked": len(int8), "unsupported": unsupported, "notes": notes}


def _xnn_reason(o: dict) -> str | None:
    op = o["op"]
    if op not in XNN_INT8_OPS:
        return "XNNPACK has no int8 kernel for it: runs on TFLite's reference kernels"
    act = o["options"].get("fusedActivationFunction", 0)
    if act not in _XNN_ACTS:
        return f"fused activation {act} is not one XNNPACK can clamp to"
    for t in [t for t in o["inputs"] + o["outputs"] if t and not t["const"] and t["type"] == 9]:
        if len(t["scales"]) > 1:
            return f"per-channel quantized activation {t['name']}"
        if t["zero_points"] and not -128 <= t["zero_points"][0] <= 127:
            return f"activation zero point {t['zero_points'][0]} out of int8 range"
    if op in XNN_WEIGHT_AXIS and len(o["inputs"]) > 1 and o["inputs"][1]:
        w = o["inputs"][1]
        if len(w["scales"]) > 1 and (w["axis"] != XNN_WEIGHT_AXIS[op] or any(w["zero_points"])):
            return (f"per-channel weights must be on axis {XNN_WEIGHT_AXIS[op]} with zero points 0")
        if not w["const"]:
            return "weights must be constant"
    return None


# --------------------------------------------------------------------------- ONNX / TensorRT
def _tensorrt(path) -> dict:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    unsupported, notes = [], []
    for v in g.input:
        if v.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
        if None in dims:
            unsupported.append({"op": "input", "name": v.name, "reason": f"dynamic shape {dims}: "
                                "one static engine needs static shapes (export --target jetson), "
                                "else build with optimization profiles"})
        elif len(dims) == 4 and dims[3] in (1, 3) and dims[1] not in (1, 3):
            notes.append(f"input {v.name} is NHWC {dims}: NCHW avoids a transpose (--target jetson)")
    producer = {o: n for n in g.node for o in n.output}
    for n in g.node:
        name = n.name or n.output[0]
        reason = TRT_REJECTS.get(n.op_type) or (None if n.op_type in TRT_OPS else
                                                "not in onnx-tensorrt's supported operators")
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not reason:
            reason = _qdq_reason(n, inits, numpy_helper)
        if reason:
            unsupported.append({"op": n.op_type, "name": name, "reason": reason})
        if n.op_type in ("Conv", "Gemm", "MatMul") and len(n.input) > 1:
            quant = [producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                     for i in n.input[:2]]
            if any(quant) and not all(quant):
                notes.append(f"{n.op_type} {name}: only one of activation and weight is quantized; "
                             "TensorRT runs it in float (quantize both inputs of weighted layers)")
    return {"source": "onnx-tensorrt docs/operators.md (TensorRT 10) + onnxOpImporters.cpp",
            "ops_checked": len(g.node), "unsupported": unsupported, "notes": notes}


def _qdq_reason(n, inits, numpy_helper) -> str | None:
    if len(n.input) > 2 and n.input[2] in inits:
        zp = inits[n.input[2]]
        if zp.data_type != 3:  # INT8
            return "TensorRT quantizes to int8 only (this zero point is not int8)"
        if numpy_helper.to_array(zp).any():
            return "non-zero zero point: TensorRT quantization is symmetric"
    if n.input[0] not in inits and n.input[1] in inits and len(inits[n.input[1]].dims) > 0 \
            and inits[n.input[1]].dims[0] > 1:
        return "per-channel activation scales: TensorRT takes per-tensor activations"
    return None
