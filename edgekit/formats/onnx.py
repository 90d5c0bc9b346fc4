"""Keras -> ONNX with tf2onnx, simplified with onnxslim, checked against Keras before writing.

Targets set the layout (``tf2onnx.convert.from_keras`` works with Keras 3 and can
transpose the input to NCHW):
- ``cpu``: NHWC input as Keras has it, dynamic batch, for onnxruntime on a CPU;
- ``jetson`` (alias ``tensorrt``): NCHW input with a static batch of 1 and static spatial
  shape, which is what TensorRT builds its fastest engines from. The ONNX stays float32;
  ``trtexec --fp16`` / ``--int8`` choose the engine precision on the device
  (``edgekit.runtime.trtexec.build_command``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..core.artifacts import Artifact, child_meta, tool_versions, write_sidecar
from ..core.errors import BadInput, EdgekitError, first_line

OPSETS = range(13, 19)  # tf2onnx 1.17 converts Keras 3 models at opsets 13..18
DEFAULT_OPSET = 17
TARGETS = {"cpu": {"nchw": False, "static": False},
           "jetson": {"nchw": True, "static": True},
           "tensorrt": {"nchw": True, "static": True}}
# Outputs must match Keras within atol + rtol * |keras| on every element of the check batch.
CHECK_ATOL, CHECK_RTOL, CHECK_BATCH = 1e-4, 1e-3, 8


def layout(target: str, nchw: bool | None = None) -> dict:
    """Input layout of ``target``; ``nchw`` overrides its default."""
    if target not in TARGETS:
        raise BadInput(f"unknown ONNX target '{target}' (known: {', '.join(TARGETS)})")
    out = dict(TARGETS[target])
    if nchw is not None:
        out["nchw"] = nchw
    return out


def keras_to_onnx(model, opset: int = DEFAULT_OPSET, nchw: bool = False, static: bool = False,
                  slim: bool = True):
    """An onnx.ModelProto of a loaded Keras model, input named ``input``."""
    if opset not in OPSETS:
        raise BadInput(f"--opset {opset} is not supported (tf2onnx converts opsets "
                       f"{OPSETS.start}..{OPSETS.stop - 1})")
    from ..models.load import keras_input_hwc, quiet_tensorflow
    from .tflite import captured_stderr

    quiet_tensorflow()
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    h, w, c = keras_input_hwc(model)
    spec = tf.TensorSpec((1 if static else None, h, w, c), tf.float32, name="input")
    with captured_stderr():
        try:
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=(spec,), opset=opset,
                                                  inputs_as_nchw=["input"] if nchw else None)
        except EdgekitError:
            raise
        except Exception as exc:  # noqa: BLE001 - any converter failure is about this model
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BadInput(f"ONNX conversion failed: {first[:200]}",
                           hint="EDGEKIT_DEBUG=1 shows the converter log") from None
    if slim:
        import onnxslim

        proto = onnxslim.slim(proto)
    return stable_tensor_names(_stable_names(proto))


def _stable_names(proto):
    """Renumber the names tf2onnx gives the nodes it inserts (``Conv__345``) in graph order:
    its counter is process-wide and drifts between conversions, and excluding nodes from
    quantization goes by name."""
    import re
    from collections import Counter

    taken = {n.name for n in proto.graph.node}
    seen: Counter = Counter()
    for n in proto.graph.node:
        m = re.fullmatch(r"(.*)__\d+", n.name)
        if m:
            seen[m.group(1)] += 1
            name = f"{m.group(1)}__{seen[m.group(1)]}"
            while name in taken and name != n.name:
                seen[m.group(1)] += 1
                name = f"{m.group(1)}__{seen[m.group(1)]}"
            taken.add(name)
            n.name = name
    return proto


def stable_tensor_names(proto):
    """Name the tensors whose names tf2onnx and onnxslim leave to chance after the nodes.

    Both merge equal constants (the 0 and 6 of every ReLU6 Clip, the batch-norm factors of
    untrained layers) and keep one of the duplicates' names, chosen by object identity; and
    tf2onnx numbers the tensors it creates (``Mean_Squeeze__411:0``) with a process-wide
    counter whose value drifts with that order. So names, and the file's bytes, changed from
    one process to the next. Here, in graph order: a generated output tensor is renamed
    ``<node>:<output index>`` (node names are already stable, ``_stable_names``); a constant
    read by several nodes, or with a generated name, ``<first reader>:in<input index>``; the
    initializers are stored in the order they are first read. Graph inputs and outputs keep
    their names. Same model, same bytes."""
    import re

    generated = re.compile(r"__\d+(:\d+)?$")
    g = proto.graph
    inits = {t.name for t in g.initializer}
    fixed = {v.name for v in g.input} | {v.name for v in g.output}
    taken = inits | fixed | {o for n in g.node for o in n.output}
    rename: dict[str, str] = {}

    def give(old: str, new: str) -> None:
        while new != old and new in taken:
            new += "_"
        taken.add(new)
        rename[old] = new

    for n in g.node:
        for j, name in enumerate(n.output):
            if name and name not in fixed and generated.search(name):
                give(name, f"{n.name}:{j}")
    readers: dict[str, int] = {}
    for n in g.node:
        for name in n.input:
            if name in inits:
                readers[name] = readers.get(name, 0) + 1
    for n in g.node:
        for i, name in enumerate(n.input):
            if (name in inits and name not in rename and name not in fixed
                    and (readers[name] > 1 or generated.search(name))):
                give(name, f"{n.name}:in{i}")
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in rename:
                n.input[i] = rename[name]
        for j, name in enumerate(n.output):
            if name in rename:
                n.output[j] = rename[name]
    for t in (*g.initializer, *g.value_info):
        if t.name in rename:
            t.name = rename[t.name]
    first: dict[str, int] = {}
    for n in g.node:
        for name in n.input:
            first.setdefault(name, len(first))
    ordered = sorted(g.initializer, key=lambda t: (first.get(t.name, len(first)), t.name))
    copies = [type(t)() for t in ordered]
    for copy, t in zip(copies, ordered):
        copy.CopyFrom(t)
    del g.initializer[:]
    g.initializer.extend(copies)
    return proto


def check_against_keras(model, proto, nchw: bool, preprocessing: dict | None,
                        n: int = CHECK_BATCH, seed: int = 0) -> float:
    """Run ``n`` random inputs (in the model's preprocessed range) through Keras and
    onnxruntime; return the largest absolute difference, or raise if any element is out of
    tolerance (nothing is written then)."""
    from ..models.load import keras_input_hwc

    h, w, c = keras_input_hwc(model)
    prep = preprocessing or {"mean": [127.5] * 3, "std": [127.5] * 3}
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0, 255, (n, h, w, c)).astype(np.float32)
    mean, std = np.float32(prep["mean"][:c]), np.float32(prep["std"][:c])
    x = (pixels - mean) / std
    want = np.asarray(model(x, training=False))
    got = run_onnx(proto, x.transpose(0, 3, 1, 2) if nchw else x)
    if got.shape != want.shape:
        raise BadInput(f"ONNX output shape {got.shape} differs from Keras {want.shape}")
    diff = np.abs(got - want)
    if not np.all(diff <= CHECK_ATOL + CHECK_RTOL * np.abs(want)):
        raise BadInput(f"ONNX outputs differ from Keras by up to {diff.max():.3g} on {n} "
                       "check inputs; nothing written", hint="EDGEKIT_DEBUG=1 for details")
    return float(diff.max())


def run_onnx(proto, x: np.ndarray) -> np.ndarray:
    """``proto``'s first output on ``x``, by onnxruntime's CPU provider (one input at a time
    when the model's batch is fixed at 1)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    if sess.get_inputs()[0].shape[0] == 1:
        return np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return sess.run(None, {name: x})[0]


def _keras_source(source: Artifact, unsafe: bool, model=None):
    if source.format != "keras":
        raise BadInput(f"{source.path}: ONNX export needs a float Keras model (.keras/.h5), "
                       f"not a {source.format} file")
    if model is not None:
        return model
    from ..models.load import load_keras

    return load_keras(source.path, unsafe=unsafe)


def onnx_io(proto) -> dict:
    from onnx.helper import tensor_dtype_to_np_dtype

    inits = {i.name for i in proto.graph.initializer}

    def describe(v) -> dict:
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "shape": dims,
                "dtype": tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name}

    ins = [v for v in proto.graph.input if v.name not in inits]
    return {"input": describe(ins[0]), "output": describe(proto.graph.output[0])}


def write_onnx(proto, source: Artifact, out: Path, force: bool, stage: str, config: dict,
               precision: str, **facts) -> Artifact:
    """Write an ONNX model and its sidecar; return the new artifact. Both or neither: a
    model whose sidecar could not be written (full disk, Ctrl-C) is removed."""
    import onnx

    io = onnx_io(proto)
    nchw = len(io["input"]["shape"]) == 4 and io["input"]["shape"][1] in (1, 3) and \
        io["input"]["shape"][3] not in (1, 3)
    from .output import undo_on_failure, write_model

    write_model(out, force, lambda tmp: onnx.save(proto, str(tmp)))
    with undo_on_failure(out):
        meta = child_meta(source, stage, config, format="onnx", precision=precision,
                          layout="NCHW" if nchw else "NHWC", opset=_opset(proto), **io, **facts,
                          tools=tool_versions("tensorflow", "tf2onnx", "onnx", "onnxslim",
                                              "onnxruntime"))
        return Artifact(path=Path(out), format="onnx", meta=write_sidecar(out, meta))


def _opset(proto) -> int | None:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def onnx_source(source: Artifact, target: str = "cpu",
                input_size: tuple[int, int] | None = None):
    """(float ONNX proto, facts) of a user's ONNX model (e.g. exported from PyTorch), as the
    quantizers take it: its input height and width made static (``input_size`` where they
    are dynamic), batch 1 for TensorRT, and opset 13 at least (per-channel QDQ needs it).
    Its layout stays as it is: converting NHWC to NCHW is the exporter's job."""
    import onnx

    from ..core.shapes import channels_axis, concrete

    try:
        proto = onnx.load(str(source.path))
    except Exception as exc:  # a damaged protobuf: user input
        raise BadInput(f"{source.path}: not a readable ONNX model ({exc.__class__.__name__})"
                       ) from None
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise BadInput(f"{source.path}: {len(inputs)} inputs; edgekit takes models with one "
                       "image input")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    fixed = concrete(shape, input_size, str(source.path))
    if layout(target)["nchw"] and channels_axis(shape) != 1:
        raise BadInput(f"{source.path}: its input {shape} is NHWC; TensorRT takes NCHW "
                       "(export the model with an NCHW input)")
    for ax in (1, 2, 3):
        dims[ax].dim_value = fixed[ax]
    if layout(target)["static"]:
        dims[0].dim_value = 1
    del proto.graph.value_info[:]  # shapes inferred for the dynamic size are stale
    if (_opset(proto) or 0) < 13:
        proto = onnx.version_converter.convert_version(proto, 13)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except Exception as exc:
        raise BadInput(f"{source.path}: its shapes do not check out at "
                       f"{list(fixed)} ({first_line(exc, 160)})") from None
    return proto, {"source_format": "onnx",
                   **({"input_size": list(input_size)} if input_size and
                      (None in shape[1:]) else {})}


def float_onnx(source: Artifact, target: str = "cpu", opset: int = DEFAULT_OPSET,
               nchw: bool | None = None, slim: bool = True, unsafe: bool = False, model=None,
               input_size: tuple[int, int] | None = None):
    """(checked float ONNX proto, facts) for a Keras ``source``: the step shared by export and
    the ONNX quantizers."""
    from ..models.load import with_input_size
    from ..core.errors import ctrl_c_stops

    with ctrl_c_stops():
        model = with_input_size(_keras_source(source, unsafe, model), input_size,
                                str(source.path))
        lay = layout(target, nchw)
        proto = keras_to_onnx(model, opset, lay["nchw"], lay["static"], slim)
        diff = check_against_keras(model, proto, lay["nchw"], source.preprocessing)
    return proto, {"check": {"max_abs_diff_vs_keras": diff, "inputs": CHECK_BATCH,
                             "atol": CHECK_ATOL, "rtol": CHECK_RTOL}}


def export_onnx(source: Artifact, out: Path, force: bool = False, unsafe: bool = False,
                target: str = "cpu", opset: int = DEFAULT_OPSET, nchw: bool | None = None,
                slim: bool = True, input_size: tuple[int, int] | None = None) -> Artifact:
    """``edgekit export --format onnx``: a float32 ONNX model checked against Keras; or, for
    an ONNX source, the same model prepared for ``target`` (static size, batch 1 for
    TensorRT)."""
    if source.format == "onnx":
        if nchw is not None:
            raise BadInput("--nchw/--nhwc: an ONNX source keeps its own layout")
        proto, facts = onnx_source(source, target, input_size)
        if slim:
            import onnxslim

            proto = onnxslim.slim(proto)
    else:
        proto, facts = float_onnx(source, target, opset, nchw, slim, unsafe,
                                  input_size=input_size)
        if input_size is not None:
            facts["input_size"] = list(input_size)
    config = {"format": "onnx", "target": target, "opset": opset, "slim": slim}
    if nchw is not None:
        config["nchw"] = nchw
    if target in ("jetson", "tensorrt"):
        from ..runtime.trtexec import build_command

        facts["trtexec"] = {p: " ".join(build_command(Path(out).name, p)) for p in ("fp16", "fp32")}
    return write_onnx(proto, source, out, force, "export", config, "fp32", **facts)


def full_range_weights(proto, base_dir: str = "") -> list[str]:
    """The Conv / MatMul / Gemm nodes of a QDQ graph (depthwise convolutions aside) that read
    int8 weights beyond +-64 (7 bits) through a DequantizeLinear, with a quantized activation
    beside them (what onnxruntime fuses into an integer kernel): those its uint8 x int8 kernels
    can saturate on x86 CPUs without VNNI (see optimize/onnx_quant.py). ``base_dir``: where the
    file's external data lies."""
    from onnx import numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    dequantized = {n.output[0]: n for n in g.node if n.op_type == "DequantizeLinear"}

    def wide(name: str) -> bool:  # an int8 constant beyond the 7-bit range
        node = dequantized.get(name)
        t = inits.get(node.input[0]) if node is not None else None
        if t is None or t.data_type != 3:  # INT8
            return False
        q = numpy_helper.to_array(t, base_dir).astype(np.int16)
        return q.size > 0 and int(np.abs(q).max()) > 64

    def depthwise(node) -> bool:  # one input channel per group: onnxruntime's own kernel
        w = inits.get(dequantized[node.input[1]].input[0])
        return node.op_type == "Conv" and w is not None and len(w.dims) > 1 and w.dims[1] == 1 \
            and any(a.name == "group" and a.i > 1 for a in node.attribute)

    return [n.name or n.output[0] for n in g.node
            if n.op_type in ("Conv", "MatMul", "Gemm") and len(n.input) > 1
            and n.input[0] in dequantized and wide(n.input[1]) and not depthwise(n)]
