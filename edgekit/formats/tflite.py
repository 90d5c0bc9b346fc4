"""Keras / SavedModel -> TFLite with TFLiteConverter, one function per precision mode.

Route: ``model.export(dir)`` then ``TFLiteConverter.from_saved_model(dir)``;
``from_concrete_functions`` produces broken models and ``from_keras_model`` floods stdout.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..core.artifacts import Artifact, child_meta, tool_versions, update_sidecar, write_sidecar
from ..core.errors import BadInput, EdgekitError, first_line
from ..models.load import load_keras, quiet_tensorflow

from ..core.registry import PRECISIONS as MODES  # noqa: E402  (fp32 converts, the rest quantize)
IO_TYPES = ("int8", "uint8", "float")
Representative = Callable[[], Iterator[list]]


@contextlib.contextmanager
def captured_stderr() -> Iterator[Callable[[], str]]:
    """Hold back the converter's C++ log lines (printed on fd 2); show them only on failure."""
    if os.environ.get("EDGEKIT_DEBUG"):
        yield lambda: ""
        return
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield lambda: (log.seek(0), log.read().decode(errors="replace"))[1]
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _converter(source: Artifact, workdir: Path, unsafe: bool, model=None):
    quiet_tensorflow()
    import tensorflow as tf

    if source.format == "keras":
        model = model if model is not None else load_keras(source.path, unsafe=unsafe)
        saved = workdir / "saved_model"
        model.export(str(saved), verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if source.format == "savedmodel":
        try:
            return tf.lite.TFLiteConverter.from_saved_model(str(source.path))
        except Exception as exc:  # a damaged saved_model.pb or variables: user input
            raise BadInput(f"{source.path}: cannot load as a SavedModel ({first_line(exc, 120)})"
                           ) from None
    raise BadInput(f"{source.path}: TFLite conversion needs a float Keras model or SavedModel, "
                   f"not a {source.format} file")


def convert_tflite(source: Artifact, mode: str = "fp32", representative: Representative | None = None,
                   io_type: str = "int8", unsafe: bool = False, model=None,
                   keep_float: Sequence[str] = ()) -> bytes:
    """Convert ``source`` to TFLite bytes in ``mode`` (one of MODES); ``model`` is the
    already-loaded Keras model of ``source``, when the caller has it. ``keep_float`` (int8
    only) names op output tensors to leave in float: selective quantization through
    TensorFlow's QuantizationDebugger, the documented route; such a model keeps float I/O."""
    if mode not in MODES:
        raise BadInput(f"unknown TFLite mode '{mode}' (known: {', '.join(MODES)})")
    if io_type not in IO_TYPES:
        raise BadInput(f"unknown I/O type '{io_type}' (known: {', '.join(IO_TYPES)})")
    from ..optimize.qat import is_qat

    if mode in ("int8", "int16x8") and representative is None and not (
            mode == "int8" and model is not None and is_qat(model)):
        raise BadInput(f"--mode {mode} needs calibration data (--calib)")
    if keep_float and mode != "int8":
        raise BadInput("layers can be kept in float only for --mode int8")
    from ..core.errors import ctrl_c_stops

    with ctrl_c_stops(), tempfile.TemporaryDirectory(prefix="edgekit-") as tmp, \
            captured_stderr() as log:
        conv = _converter(source, Path(tmp), unsafe, model)
        _configure(conv, mode, representative, io_type)
        try:
            if keep_float:
                return _selective(conv, representative, keep_float)
            return conv.convert()
        except EdgekitError:
            raise
        except Exception as exc:
            detail = str(exc).strip().splitlines() or [exc.__class__.__name__]
            raise BadInput(f"TFLite conversion failed: {detail[0][:200]}",
                           hint="EDGEKIT_DEBUG=1 shows the converter log") from None
        finally:
            if os.environ.get("EDGEKIT_DEBUG"):
                print(log())


def float_ops(data: bytes) -> list[str]:
    """The ops of a .tflite that compute in float (an output of float type), by kind."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=data, experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))  # the graph's own ops, undelegated
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    return sorted({op["op_name"] for op in it._get_ops_details()  # no public API lists ops
                   if any(tensors[i]["dtype"].__name__.startswith("float")
                          for i in op["outputs"] if i in tensors)})


def _selective(conv, representative: Representative, keep_float: Sequence[str]) -> bytes:
    import tensorflow as tf

    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                      tf.lite.OpsSet.TFLITE_BUILTINS]  # float ops allowed
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(keep_float))
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=representative, debug_options=options)
    return debugger.get_nondebug_quantized_model()


def layer_errors(source: Artifact, representative: Representative, unsafe: bool = False,
                 model=None) -> list[dict]:
    """Per-layer int8 error against float, from TensorFlow's QuantizationDebugger: each
    quantized op's output is compared with the float op run on the same inputs. Sorted worst
    first by RMSE in quantization steps (rmse / scale), the metric TensorFlow's debugger guide
    ranks layers by."""
    import csv
    import io

    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="edgekit-") as tmp, captured_stderr():
        conv = _converter(source, Path(tmp), unsafe, model)
        _configure(conv, "int8", representative, "float")
        debugger = tf.lite.experimental.QuantizationDebugger(converter=conv,
                                                              debug_dataset=representative)
        debugger.run()
        buf = io.StringIO()
        debugger.layer_statistics_dump(buf)
    rows = []
    for r in csv.DictReader(io.StringIO(buf.getvalue())):
        scale = float(r["scale"] or 0)
        rmse = float(r["mean_squared_error"]) ** 0.5
        rows.append({"name": r["tensor_name"], "op": r["op_name"],
                     "error": rmse / scale if scale else float("inf"), "metric": "rmse/scale"})
    return sorted(rows, key=lambda r: -r["error"])


def _configure(conv, mode: str, representative: Representative | None, io_type: str) -> None:
    import tensorflow as tf

    ops = tf.lite.OpsSet
    if mode == "fp32":
        return
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        conv.representative_dataset = representative
        if representative is not None:  # else a QAT model: its fake-quant ops give the ranges
            conv.target_spec.supported_ops = [ops.TFLITE_BUILTINS_INT8]
        if io_type != "float":
            dtype = {"int8": tf.int8, "uint8": tf.uint8}[io_type]
            conv.inference_input_type = conv.inference_output_type = dtype
    elif mode == "int16x8":
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [
            ops.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]


def tflite_io(path: Path) -> dict:
    """Input and output tensor facts of a .tflite file, read with the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interp = Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as exc:  # LiteRT's flatbuffer verifier, missing ops
        raise BadInput(f"{path}: LiteRT cannot load it ({first_line(exc, 120)})") from None

    def describe(d: dict) -> dict:
        scale, zero = d["quantization"]
        out = {"name": d["name"], "shape": [int(s) for s in d["shape"]],
               "shape_signature": [int(s) if s > 0 else None
                                   for s in d.get("shape_signature", d["shape"])],
               "dtype": np.dtype(d["dtype"]).name}
        if scale:
            out["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
        return out

    return {"input": describe(interp.get_input_details()[0]),
            "output": describe(interp.get_output_details()[0])}


def write_tflite(data: bytes, source: Artifact, out: Path, force: bool, stage: str,
                 config: dict, precision: str) -> Artifact:
    """Write converted bytes and their sidecar; return the new artifact. Both or neither:
    a model whose sidecar could not be written (full disk, Ctrl-C) is removed."""
    from .output import undo_on_failure, write_model

    io = write_model(out, force, lambda tmp: (tmp.write_bytes(data), tflite_io(tmp))[1])
    with undo_on_failure(out):
        meta = child_meta(source, stage, config, format="tflite", precision=precision, **io,
                          tools=tool_versions("tensorflow", "ai-edge-litert"))
        return Artifact(path=Path(out), format="tflite", meta=write_sidecar(out, meta))


def export_tflite(source: Artifact, out: Path, force: bool = False, unsafe: bool = False,
                  target: str = "cpu", input_size: tuple[int, int] | None = None) -> Artifact:
    """``edgekit export --format tflite``: float32 for the CPU; for ``--target gpu``, fp16
    weights (the GPU delegate computes in half precision) plus edgekit's op-by-op GPU-delegate
    check, recorded in the sidecar. A dynamic input size is fixed to ``input_size``."""
    from ..models.load import with_input_size

    mode = "fp16" if target == "gpu" else "fp32"
    model = None
    if source.format == "keras":
        model = with_input_size(load_keras(source.path, unsafe=unsafe), input_size,
                                str(source.path))
    data = convert_tflite(source, mode, unsafe=unsafe, model=model)
    art = write_tflite(data, source, out, force, "export",
                       {"format": "tflite", "mode": mode, "target": target}, precision=mode)
    if target == "gpu":
        from .output import undo_on_failure

        with undo_on_failure(out):
            art = record_gpu_check(art)
    return art


def record_gpu_check(art: Artifact) -> Artifact:
    """Run the GPU-delegate check on ``art``, store it in the sidecar, warn on fallbacks."""
    import logging

    from .compat import check

    result = check(art.path, "tflite", "gpu")
    if result["unsupported"] or result.get("cpu_macs_share", 0) > 0:
        logging.getLogger("edgekit").warning(
            "%d op(s) would not run on the GPU delegate; about %.1f%% of MACs stay on the CPU "
            "(edgekit inspect %s --check gpu)", len(result["unsupported"]),
            100 * result.get("cpu_macs_share", 0), art.path)
    return update_sidecar(art, compat=result)
