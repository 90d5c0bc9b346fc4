"""Keras / SavedModel -> TFLite with TFLiteConverter, one function per precision mode.

Route (FACTS.md): ``model.export(dir)`` then ``TFLiteConverter.from_saved_model(dir)``;
``from_concrete_functions`` produces broken models and ``from_keras_model`` floods stdout.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..artifacts import Artifact, atomic_path, child_meta, tool_versions, write_sidecar
from ..errors import BadInput, EdgekitError
from ..models.load import load_keras, quiet_tensorflow

MODES = ("fp32", "fp16", "dynamic", "int8", "int16x8")
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
        return tf.lite.TFLiteConverter.from_saved_model(str(source.path))
    raise BadInput(f"{source.path}: TFLite conversion needs a float Keras model or SavedModel, "
                   f"not a {source.format} file")


def convert_tflite(source: Artifact, mode: str = "fp32", representative: Representative | None = None,
                   io_type: str = "int8", unsafe: bool = False, model=None) -> bytes:
    """Convert ``source`` to TFLite bytes in ``mode`` (one of MODES); ``model`` is the
    already-loaded Keras model of ``source``, when the caller has it."""
    if mode not in MODES:
        raise BadInput(f"unknown TFLite mode '{mode}' (known: {', '.join(MODES)})")
    if io_type not in IO_TYPES:
        raise BadInput(f"unknown I/O type '{io_type}' (known: {', '.join(IO_TYPES)})")
    if mode in ("int8", "int16x8") and representative is None:
        raise BadInput(f"--mode {mode} needs calibration data (--calib)")
    with tempfile.TemporaryDirectory(prefix="edgekit-") as tmp, captured_stderr() as log:
        conv = _converter(source, Path(tmp), unsafe, model)
        _configure(conv, mode, representative, io_type)
        try:
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

    interp = Interpreter(model_path=str(path))

    def describe(d: dict) -> dict:
        scale, zero = d["quantization"]
        out = {"name": d["name"], "shape": [int(s) for s in d["shape"]],
               "dtype": np.dtype(d["dtype"]).name}
        if scale:
            out["quantization"] = {"scale": float(scale), "zero_point": int(zero)}
        return out

    return {"input": describe(interp.get_input_details()[0]),
            "output": describe(interp.get_output_details()[0])}


def write_tflite(data: bytes, source: Artifact, out: Path, force: bool, stage: str,
                 config: dict, precision: str) -> Artifact:
    """Write converted bytes and their sidecar atomically; return the new artifact."""
    with atomic_path(out, force) as tmp:
        tmp.write_bytes(data)
        io = tflite_io(tmp)
    meta = child_meta(source, stage, config, format="tflite", precision=precision, **io,
                      tools=tool_versions("tensorflow", "ai-edge-litert"))
    return Artifact(path=Path(out), format="tflite", meta=write_sidecar(out, meta))


def export_tflite(source: Artifact, out: Path, force: bool = False, unsafe: bool = False) -> Artifact:
    """``edgekit export --format tflite``: a float32 TFLite model."""
    data = convert_tflite(source, "fp32", unsafe=unsafe)
    return write_tflite(data, source, out, force, "export", {"format": "tflite", "mode": "fp32"},
                        precision="fp32")
