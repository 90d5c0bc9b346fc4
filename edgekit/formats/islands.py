"""Float islands in an int8 .tflite: ops whose int8 kernel is much slower than float on a CPU
run in float between a DEQUANTIZE and a QUANTIZE.

LiteRT's XNNPACK delegate does not take int8 HARD_SWISH nor an unfused int8 RELU6, so
TFLite's own int8 kernel runs it: 35x slower than XNNPACK's float one on a 32x32x96 tensor
here (benchmarks/int8_ops.py), enough to make a whole int8 MobileNetV3 slower than fp32.
DEQUANTIZE, the float op and QUANTIZE are all delegated, and cost a little more than the
float op alone. The island is also more exact: the op computes on the dequantized values and
is quantized once, with the output's own scale and zero point (the ones calibration or
quantization-aware training chose), as the fake-quantized Keras model computes it.

Written here because the converter has no switch for it: its debugger's ``denylisted_ops``
does the same for post-training quantization only (not for a model trained with fake-quant
ops, which converts without a debug dataset). This rewrites the flatbuffer with TensorFlow's
own schema objects (``tensorflow.lite.tools.flatbuffer_utils``).
"""

from __future__ import annotations

SLOW_INT8 = ("HARD_SWISH", "RELU6")  # ops XNNPACK runs only in float


def float_islands(data: bytes, kinds: tuple[str, ...] = SLOW_INT8) -> tuple[bytes, dict[str, int]]:
    """``data`` with every int8 op of ``kinds`` run in float; and how many of each were moved."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    wanted = {getattr(fb.BuiltinOperator, k): k for k in kinds}
    moved: dict[str, int] = {}
    for graph in model.subgraphs:
        operators = []
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            kind = max(code.builtinCode, code.deprecatedBuiltinCode)
            ends = [graph.tensors[op.inputs[0]], graph.tensors[op.outputs[0]]]
            others = [graph.tensors[i] for i in op.inputs[1:] if i >= 0]  # MEAN's axes
            if kind not in wanted or len(op.outputs) != 1 or \
                    any(t.type != fb.TensorType.INT8 for t in ends) or \
                    any(t.type == fb.TensorType.INT8 for t in others):
                operators.append(op)
                continue
            x, y = op.inputs[0], op.outputs[0]
            x_float, y_float = _float_copy(graph, x), _float_copy(graph, y)
            operators += [_op(_opcode(model, fb.BuiltinOperator.DEQUANTIZE, 2), x, x_float), op,
                          _op(_opcode(model, fb.BuiltinOperator.QUANTIZE, 1), y_float, y)]
            op.inputs, op.outputs = [x_float, *op.inputs[1:]], [y_float]
            moved[wanted[kind]] = moved.get(wanted[kind], 0) + 1
        graph.operators = operators
    if not moved:
        return data, {}
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), moved


def _float_copy(graph, index: int) -> int:
    """A new float32 tensor shaped like tensor ``index`` (no quantization, no data)."""
    from tensorflow.lite.python import schema_py_generated as fb

    src = graph.tensors[index]
    t = fb.TensorT()
    t.shape, t.shapeSignature = src.shape, src.shapeSignature
    t.type, t.buffer = fb.TensorType.FLOAT32, 0  # buffer 0: the empty one
    t.name = (src.name or b"") + b"_float"
    graph.tensors.append(t)
    return len(graph.tensors) - 1


def _opcode(model, builtin: int, version: int) -> int:
    """The index of ``builtin``'s operator code (added if the model has none)."""
    from tensorflow.lite.python import schema_py_generated as fb

    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            code.version = max(code.version, version)
            return i
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = builtin  # < 127: both fields hold it
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _op(opcode: int, source: int, target: int):
    from tensorflow.lite.python import schema_py_generated as fb

    op = fb.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, [source], [target]
    return op
