"""What ``edgekit inspect`` reports, computed from the model graph itself.

``analyze(path, fmt)`` returns a JSON-able dict: size, params, MACs (batch 1), inputs/outputs,
precision, an op histogram and per-layer work for conv / depthwise / pointwise / dense layers.

MACs count only the layers that do the work (conv: k*k*Cin/groups*Cout*Hout*Wout,
depthwise: k*k*C*mult*Hout*Wout, dense: in*out per output position); adds, activations,
pooling and BatchNorm are not counted, which is the convention of the published MobileNet
figures (tensorflow/models slim README, "1.0 MobileNetV2 224: 300 M MACs").

Params differ between formats on purpose: Keras counts every variable, BatchNorm's four
per-channel vectors included; converters fold BN into the preceding conv (its weights, plus a
bias of Cout), and tf2onnx also de-duplicates identical constants. Each format reports what
its file really holds.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from edgekit.core.errors import BadInput
from edgekit.core.shapes import channels_axis, concrete, is_dynamic

FORMATS = ("keras", "savedmodel", "tflite", "onnx")


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= 1 if x is None or int(x) < 0 else int(x)
    return out


def _dims(shape) -> list:
    return [None if d is None or int(d) < 0 else int(d) for d in shape]


def _size(p: Path) -> int:
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return p.stat().st_size


def _bad(path, fmt, exc: Any) -> BadInput:
    from ..core.errors import first_line

    return BadInput(f"cannot read {path} as {fmt}: {first_line(exc)}")


def _layer(name, kind, macs, params, shape) -> dict:
    return {"name": name, "kind": kind, "macs": int(macs), "params": int(params),
            "output_shape": _dims(shape) if shape is not None else None}


def _conv_kind(ksize, cin_per_group, groups) -> str:
    if groups > 1 and cin_per_group == 1:
        return "depthwise"
    if groups == 1 and all(int(k) == 1 for k in ksize):
        return "pointwise"
    return "conv"


def analyze(path: str | Path, fmt: str, input_size: tuple[int, int] | None = None) -> dict:
    """What a model is, from its graph. A dynamic input height and width are taken from
    ``input_size``; without it, MACs are not counted (never with the symbolic dims as 1)."""
    p = Path(path)
    if fmt not in FORMATS:
        raise BadInput(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if not p.exists():
        raise BadInput(f"cannot read {p} as {fmt}: no such file or folder")
    if p.is_dir() != (fmt == "savedmodel"):
        raise BadInput(f"cannot read {p} as {fmt}: " + ("a folder, not a file" if p.is_dir()
                       else "a SavedModel is a folder"))
    out = {"format": fmt, "size_bytes": _size(p), "params": 0, "macs": 0, "inputs": [],
           "outputs": [], "precision": "fp32", "ops": {}, "layers": [], "notes": []}
    if fmt in ("keras", "onnx"):
        out.update({"keras": _keras, "onnx": _onnx}[fmt](p, input_size))
    else:
        out.update({"savedmodel": _savedmodel, "tflite": _tflite}[fmt](p))
    dynamic = [t for t in out["inputs"] if len(t["shape"]) == 4 and is_dynamic(t["shape"])]
    if dynamic and (input_size is None or fmt not in ("keras", "onnx")):
        out["macs"] = None
        out["notes"].append(f"input {dynamic[0]['shape']} has a dynamic size: MACs are not "
                            "counted" + (" (give --input-size H[xW])"
                                         if fmt in ("keras", "onnx") else
                                         f" for a {fmt} file"))
        for layer in out["layers"]:
            layer["macs"] = None
    elif out["layers"] and out["macs"] is not None:
        out["macs"] = sum(layer["macs"] for layer in out["layers"])
        if dynamic:
            out["input_size"] = list(input_size)
    if input_size is not None and not dynamic and fmt in ("keras", "onnx"):
        for t in out["inputs"][:1]:  # a size that contradicts a fixed input is an error
            concrete(t["shape"], input_size, str(p))
    return out


# --------------------------------------------------------------------------- keras
def _keras(p: Path, input_size: tuple[int, int] | None = None) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    try:
        model = keras.saving.load_model(p, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - every loader failure is a bad input
        msg = str(exc)
        if "safe_mode" in msg or "Lambda" in msg:
            raise BadInput(f"cannot read {p} as keras: it contains code (e.g. a Lambda layer) "
                           "that safe mode refuses to load; it needs --unsafe") from None
        raise _bad(p, "keras", exc) from None
    info = None
    if input_size is not None and len(model.inputs[0].shape) == 4 and \
            is_dynamic(list(model.inputs[0].shape)):
        from ..models.load import with_input_size

        info = _keras_model(model, keras)  # the file's own inputs, as they are
        model = with_input_size(model, input_size, str(p))
    counted = _keras_model(model, keras)
    if info is not None:
        counted["inputs"] = info["inputs"]
    return counted


def keras_counts(model) -> dict:
    """Parameters and MACs of an in-memory Keras model, counted as ``analyze`` counts them."""
    import keras

    info = _keras_model(model, keras)
    return {"params": info["params"], "macs": sum(layer["macs"] for layer in info["layers"])}


def _keras_model(model, keras) -> dict:
    from ..models.load import leaf_layers

    layers, ops, notes = [], Counter(), []
    for layer in leaf_layers(model):
        ops[type(layer).__name__] += 1
        layers.extend(_keras_layer(layer, keras, notes))
    dtypes = {str(w.dtype) for w in model.weights}
    if any("int" in d for d in dtypes):
        precision = "dynamic"  # Keras int8 layers quantize activations on the fly
    elif dtypes and dtypes <= {"float16", "bfloat16"}:
        precision = "fp16"
    else:
        precision = "fp32"
    io = [[{"name": t.name, "shape": _dims(t.shape), "dtype": str(t.dtype)} for t in ts]
          for ts in (model.inputs, model.outputs)]
    return {"params": int(model.count_params()), "inputs": io[0], "outputs": io[1],
            "precision": precision, "ops": dict(ops), "layers": layers, "notes": notes}


def _keras_layer(layer, keras, notes) -> list:
    L = keras.layers
    transpose = isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose))
    work = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D, L.SeparableConv2D, L.Dense)
    if not (transpose or isinstance(layer, work)):
        return []
    try:
        ishape, oshape = layer.input.shape, layer.output.shape
    except (AttributeError, ValueError):
        notes.append(f"layer {layer.name} is shared or unbuilt: its MACs are not counted")
        return []
    first = getattr(layer, "data_format", "channels_last") == "channels_first"
    # transposed conv: every *input* pixel meets the whole kernel (kh, kw, Cout, Cin)
    spatial = (ishape if transpose else oshape)[2:] if first else \
        (ishape if transpose else oshape)[1:-1]
    n = layer.count_params()
    if isinstance(layer, L.Dense):  # kernel (in, out), applied at every leading position
        return [_layer(layer.name, "dense", _prod(layer.kernel.shape) * _prod(oshape[1:-1]),
                       n, oshape)]
    if isinstance(layer, L.SeparableConv2D):
        dk, pk = layer.depthwise_kernel.shape, layer.pointwise_kernel.shape
        return [_layer(layer.name + "/depthwise", "depthwise", _prod(dk) * _prod(spatial),
                       _prod(dk), None),
                _layer(layer.name + "/pointwise", "pointwise", _prod(pk) * _prod(spatial),
                       n - _prod(dk), oshape)]
    k = layer.kernel.shape  # conv (k..., Cin/groups, Cout); depthwise (kh, kw, C, mult)
    if isinstance(layer, L.DepthwiseConv2D):
        kind = "depthwise"
    else:
        kind = "conv" if transpose else _conv_kind(k[:-2], k[-2], getattr(layer, "groups", 1))
    return [_layer(layer.name, kind, _prod(k) * _prod(spatial), n, oshape)]


# --------------------------------------------------------------------------- savedmodel
def _savedmodel(p: Path) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if not (p / "saved_model.pb").exists():
        raise BadInput(f"cannot read {p} as savedmodel: no saved_model.pb in it")
    try:
        loaded = tf.saved_model.load(str(p))
        sig = loaded.signatures.get("serving_default") or next(iter(loaded.signatures.values()))
    except StopIteration:
        raise BadInput(f"cannot read {p} as savedmodel: it has no signatures") from None
    except Exception as exc:  # noqa: BLE001
        raise _bad(p, "savedmodel", exc) from None
    ins = [{"name": k, "shape": _dims(s.shape), "dtype": s.dtype.name}
           for k, s in sorted(sig.structured_input_signature[1].items())]
    outs = [{"name": k, "shape": _dims(s.shape), "dtype": s.dtype.name}
            for k, s in sorted(sig.structured_outputs.items())]
    # the variables the serving function captures (the checkpoint may hold copies of them)
    uniq = {id(v): v for v in sig.variables}.values()
    params = sum(int(v.shape.num_elements() or 0) for v in uniq)
    dtypes = {v.dtype.name for v in uniq}
    precision = "dynamic" if any("int" in d for d in dtypes) else (
        "fp16" if dtypes and dtypes <= {"float16", "bfloat16"} else "fp32")
    return {"params": params, "macs": None, "inputs": ins, "outputs": outs,
            "precision": precision,
            "notes": ["SavedModel: MACs, ops and layers are not computed; export to "
                      "tflite or onnx, or inspect the .keras file"]}


# --------------------------------------------------------------------------- tflite
_TFL_WORK = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D",
             "BATCH_MATMUL"}


def _tflite(p: Path) -> dict:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        # Without default delegates: XNNPACK would replace the ops by DELEGATE nodes.
        it = Interpreter(model_path=str(p), experimental_op_resolver_type=(
            OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        ops = it._get_ops_details()  # no public API lists the graph's ops
        tensors = {t["index"]: t for t in it.get_tensor_details()}
        ins, outs = it.get_input_details(), it.get_output_details()
    except Exception as exc:  # noqa: BLE001
        raise _bad(p, "tflite", exc) from None
    produced = {i for op in ops for i in op["outputs"]}
    graph_in = {t["index"] for t in ins}
    producer = {i: op for op in ops for i in op["outputs"]}

    def const(i):
        return i >= 0 and i not in produced and i not in graph_in and i in tensors

    def dt(i):
        return tensors[i]["dtype"].__name__

    params, seen, layers, kinds = 0, set(), [], set()
    for op in ops:
        name = op["op_name"]
        for pos, i in enumerate(op["inputs"]):
            if not const(i) or i in seen or (name == "TRANSPOSE_CONV" and pos == 0):
                continue
            # weights/biases: float consts anywhere, any const of a work op or a DEQUANTIZE;
            # integer consts elsewhere are axes, shapes and paddings.
            if name in _TFL_WORK or name == "DEQUANTIZE" or dt(i).startswith("float"):
                seen.add(i)
                params += _prod(tensors[i]["shape"])
        if name not in _TFL_WORK or len(op["inputs"]) < 2:
            continue
        x, w = op["inputs"][0], op["inputs"][1]
        if x < 0 or w < 0 or not op["outputs"]:
            continue
        o = op["outputs"][0]
        oshape, wshape = tensors[o]["shape"], tensors[w]["shape"]
        if name == "CONV_2D":  # w: (Cout, kh, kw, Cin/groups)
            groups = max(1, int(tensors[x]["shape"][-1]) // max(1, int(wshape[-1])))
            kind = _conv_kind(wshape[1:3], wshape[-1], groups)
            macs = _prod(wshape) * _prod(oshape[1:-1])
        elif name == "DEPTHWISE_CONV_2D":  # w: (1, kh, kw, C*mult)
            kind, macs = "depthwise", _prod(wshape) * _prod(oshape[1:-1])
        elif name == "CONV_3D":  # w: (kd, kh, kw, Cin, Cout)
            kind, macs = "conv", _prod(wshape) * _prod(oshape[1:-1])
        elif name == "TRANSPOSE_CONV":  # inputs: output_shape, weights, x
            w, x = op["inputs"][1], op["inputs"][2]
            wshape = tensors[w]["shape"]
            kind, macs = "conv", _prod(wshape) * _prod(tensors[x]["shape"][1:-1])
        elif name == "FULLY_CONNECTED":  # w: (out, in)
            kind, macs = "dense", _prod(wshape) * (_prod(oshape) // max(1, int(wshape[0])))
        else:  # BATCH_MATMUL: (..., M, K) x (..., K, N)
            kind, macs = "dense", _prod(oshape) * int(tensors[x]["shape"][-1])
        deq = {i for i in op["inputs"]
               if i in producer and producer[i]["op_name"] == "DEQUANTIZE"}
        wp = sum(_prod(tensors[i]["shape"]) for i in op["inputs"][1:] if const(i) or i in deq)
        layers.append(_layer(tensors[o]["name"], kind, macs, wp, oshape))
        wsrc = producer[w]["inputs"][0] if w in deq else w
        kinds.add(_tfl_precision(dt(wsrc), dt(x)))
    if kinds == {"dynamic", "fp32"}:
        kinds = {"dynamic"}  # dynamic-range quantization leaves small tensors in float
    precision = kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "fp32")
    io = [[{"name": t["name"], "shape": _dims(t.get("shape_signature", t["shape"])),
            "dtype": t["dtype"].__name__} for t in ts] for ts in (ins, outs)]
    return {"params": params, "inputs": io[0], "outputs": io[1], "precision": precision,
            "ops": dict(Counter(op["op_name"] for op in ops)), "layers": layers}


def _tfl_precision(wdtype: str, xdtype: str) -> str:
    if wdtype == "int8":
        if xdtype in ("int8", "uint8"):
            return "int8"
        return "int16x8" if xdtype == "int16" else "dynamic"
    return "fp16" if wdtype == "float16" else "fp32"


# --------------------------------------------------------------------------- onnx
_Q_SLOTS = {"QuantizeLinear": {1, 2}, "DequantizeLinear": {1, 2},
            "QLinearConv": {1, 2, 4, 5, 6, 7}, "QLinearMatMul": {1, 2, 4, 5, 6, 7},
            "ConvInteger": {2, 3}, "MatMulInteger": {2, 3},
            "Clip": {1, 2}, "Pad": {1, 2, 3}}  # scales, zero points, bounds: not weights
_ONNX_W = {"Conv": 1, "ConvTranspose": 1, "ConvInteger": 1, "QLinearConv": 3, "Gemm": 1,
           "MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3}  # op -> weight input slot


def _onnx(p: Path, input_size: tuple[int, int] | None = None) -> dict:
    try:
        import onnx

        model = onnx.load(str(p))
        g = model.graph
        if not g.node:
            raise ValueError("the graph has no nodes")
        _names_are_text(g)
        inits = {i.name: i for i in g.initializer}
        init_names = set(inits)
        io = [[{"name": v.name, "shape": _vshape(v), "dtype": onnx.helper.
                tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name}
               for v in vs if v.name not in init_names] for vs in (g.input, g.output)]
        for v in g.input:  # batch 1 for shape inference: set a symbolic first dim to 1
            dims = v.type.tensor_type.shape.dim
            if v.name not in init_names and dims and not dims[0].HasField("dim_value"):
                dims[0].dim_value = 1
            if v.name not in init_names and len(dims) == 4 and input_size is not None:
                shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
                for ax, value in zip((2, 3) if channels_axis(shape) == 1 else (1, 2),
                                     input_size):
                    dims[ax].dim_value = value
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception as exc:  # noqa: BLE001
        raise _bad(p, "onnx", exc) from None
    shapes = {i.name: list(i.dims) for i in g.initializer}
    for v in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
        if v.type.tensor_type.HasField("shape"):
            shapes[v.name] = _vshape(v)
    for n in g.node:  # Constant nodes hold weights too
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            shapes[n.output[0]] = list(n.attribute[0].t.dims)
            inits[n.output[0]] = n.attribute[0].t

    params, counted = 0, set()
    for n in g.node:
        for pos, name in enumerate(n.input):
            if name in inits and name not in counted and pos not in _Q_SLOTS.get(n.op_type, ()):
                t = inits[name]
                is_float = t.data_type in (1, 10, 11, 16)
                if is_float or n.op_type in _ONNX_W or n.op_type == "DequantizeLinear":
                    counted.add(name)
                    params += _prod(t.dims)
    producer = {o: n for n in g.node for o in n.output}
    layers, wdtypes, notes = [], set(), []
    for n in g.node:
        if n.op_type not in _ONNX_W or len(n.input) <= _ONNX_W[n.op_type]:
            continue
        w, o = n.input[_ONNX_W[n.op_type]], n.output[0]
        ws, os_ = shapes.get(w), shapes.get(o)
        if ws is None or os_ is None or None in ws:
            notes.append(f"{n.op_type} {n.name or o}: shapes unknown, its MACs are not counted")
            continue
        rank = 3 if "Conv" in n.op_type else 2 if n.op_type == "Gemm" else 1
        if len(ws) < rank:  # a damaged file: onnx's shape inference lets this through
            raise BadInput(f"{p}: not a valid onnx model ({n.op_type} {n.name or o}: its weight "
                           f"has {len(ws)} dimensions, at least {rank} expected)")
        if n.op_type == "ConvTranspose":  # w: (Cin, Cout/group, k...), per *input* pixel
            xs = shapes.get(n.input[0]) or []
            kind, macs = "conv", _prod(ws) * _prod(xs[2:])
        elif "Conv" in n.op_type:  # w: (Cout, Cin/group, k...)
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            kind, macs = _conv_kind(ws[2:], ws[1], group), _prod(ws) * _prod(os_[2:])
        elif n.op_type == "Gemm":
            trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
            k = ws[1] if trans_b else ws[0]
            kind, macs = "dense", _prod(os_) * k
        else:  # MatMul family: (..., M, K) x (..., K, N)
            kind, macs = "dense", _prod(os_) * (ws[-2] if len(ws) > 1 else ws[0])
        src = producer.get(w)
        if src is not None and src.op_type == "DequantizeLinear":
            wdtypes.add(inits[src.input[0]].data_type if src.input[0] in inits else 0)
        elif w in inits:
            wdtypes.add(inits[w].data_type)
        wp = sum(_prod(inits[i].dims) for i in n.input[1:] if i in inits and i in counted)
        if src is not None and src.op_type == "DequantizeLinear" and src.input[0] in inits:
            wp += _prod(inits[src.input[0]].dims)
        layers.append(_layer(n.name or o, kind, macs, wp, os_))
    ops = Counter(n.op_type for n in g.node)
    return {"params": params, "inputs": io[0], "outputs": io[1], "ops": dict(ops),
            "layers": layers, "precision": _onnx_precision(ops, g, inits, wdtypes),
            "notes": notes}


def _vshape(v) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]


def _names_are_text(g) -> None:
    """ONNX names and op types are proto2 strings: protobuf hands invalid UTF-8 in one back
    as bytes, which nothing downstream (op counts, JSON) can use."""
    values = (*g.input, *g.output, *g.value_info, *g.initializer)
    for what, texts in (*((f"node {i}", (n.op_type, n.name, *n.input, *n.output))
                          for i, n in enumerate(g.node)),
                        ("the graph's inputs, outputs and weights", [v.name for v in values])):
        if not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{what}: a name or op type is not UTF-8 text")


def _onnx_precision(ops, g, inits, wdtypes) -> str:
    if ops["DynamicQuantizeLinear"] or ops["MatMulInteger"] or ops["ConvInteger"]:
        return "dynamic"
    if ops["QuantizeLinear"] or ops["QLinearConv"] or ops["QLinearMatMul"]:
        # activation type = the zero point's type of the QuantizeLinear nodes (uint8 default)
        act = {inits[n.input[2]].data_type if len(n.input) > 2 and n.input[2] in inits else 2
               for n in g.node if n.op_type == "QuantizeLinear"}
        if act & {5, 4}:  # INT16, UINT16
            return "int16x8"
        return "int8"
    if ops["DequantizeLinear"] and wdtypes & {2, 3}:
        return "dynamic"  # weight-only quantization: activations stay float
    if 10 in wdtypes:  # FLOAT16
        return "fp16" if wdtypes <= {10} else "mixed"
    return "fp32"
