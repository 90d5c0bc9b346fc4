"""The stages that convert a float model: ``quantize`` and ``export``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.errors import BadInput
from .base import QUIET, Options, Reporter, Stage, option
from .common import (INPUT_SIZE_HELP, PREP_HELP, UNSAFE_HELP, default_output, open_model)


class QuantizeOptions(Options):
    mode: str = option(..., "int8 | fp16 | dynamic | int16x8 (ONNX: int8).", "--mode", "-m")
    fmt: Optional[str] = option(None, "Output format: tflite | onnx (default: onnx for an .onnx "
                                "model or -o x.onnx, else tflite).", "--format")
    target: str = option("cpu", "Where it will run: cpu | gpu (TFLite GPU delegate) | tensorrt "
                         "(Jetson; ONNX). Picks the quantization scheme.")
    engine: Optional[str] = option(None, "Quantizer: tflite (TFLite); ort (default) or nncf "
                                   "(ONNX, --target cpu).")
    calib: Optional[str] = option(None, "Calibration data for int8/int16x8: folder, .npz, IDX "
                                  "file or fashion-mnist[-sample]:train.")
    calib_size: int = option(200, "Calibration samples (class-balanced).")
    io_type: str = option("int8", "TFLite int8 model input/output type: int8 | uint8 | float.",
                          "--io")
    opset: int = option(17, "ONNX opset (13-18).")
    data: Optional[str] = option(None, "Labelled validation data for --max-drop.")
    max_drop: Optional[float] = option(None, "Largest top-1 drop (percentage points) allowed on "
                                       "--data; the most sensitive layers are kept in float "
                                       "until it holds.")
    max_float_layers: Optional[int] = option(None, "With --max-drop: keep at most this many "
                                             "layers in float (0: none; with --qat-epochs, "
                                             "go from PTQ straight to QAT).")
    qat_epochs: int = option(0, "With --max-drop (TFLite): if no number of float layers meets "
                             "it, train the model with --qat for this many epochs on --qat-data "
                             "and convert that (every layer int8).")
    qat_data: Optional[str] = option(None, "Labelled training data for --qat-epochs (folder of "
                                     "class folders, .npz, IDX or fashion-mnist[-sample]:train).")
    keep_float: list[str] = option([], "Layer/node name to keep in float (repeatable).")
    speed_check: bool = option(True, "Time the result against the float model on this machine "
                               "and warn if it is not faster (CPU targets).",
                               "--speed-check/--no-speed-check")
    threads: int = option(1, "Threads for the speed check.")
    float_islands: bool = option(True, "TFLite int8, --target cpu: run HARD_SWISH and unfused "
                                 "RELU6 in float between int8 ops (XNNPACK has no int8 kernel "
                                 "for them: 35x slower); --no-float-islands keeps every op int8.",
                                 "--float-islands/--no-float-islands")
    preprocessing: Optional[str] = option(None, PREP_HELP)
    input_size: Optional[str] = option(None, INPUT_SIZE_HELP)
    unsafe: bool = option(False, UNSAFE_HELP)


def quantize(model: Path, o: QuantizeOptions, output: Optional[Path], *, force: bool = False,
             reporter: Reporter = QUIET):
    """Post-training quantization to TFLite or ONNX, with the scheme that is fast on the
    target, an optional accuracy budget (--max-drop) and a speed check against float.

    Returns the quantized model's Artifact (its sidecar in ``.meta``)."""
    from ..core.artifacts import check_output
    from ..core.registry import QUANTIZERS
    from ..core.shapes import parse_input_size

    size = parse_input_size(o.input_size)
    fmt = o.fmt or ("onnx" if ".onnx" in (model.suffix.lower(), (output or model).suffix.lower())
                    else "tflite")
    if fmt == "tflite" and model.suffix.lower() == ".onnx":
        raise BadInput(f"{model}: an ONNX model is quantized to ONNX (--format onnx); "
                       "converting ONNX to TFLite is out of edgekit's scope")
    entry = QUANTIZERS.get_entry(fmt)
    caps = entry.caps
    engine = o.engine or caps["engines"][0]
    for name, value, known in (("--mode", o.mode, caps["modes"]),
                               ("--target", o.target, caps["targets"]),
                               ("--engine", engine, caps["engines"])):
        if value not in known:
            raise BadInput(f"unknown {name} '{value}' for --format {fmt} (known: {', '.join(known)})")
    if (o.max_drop is None) != (o.data is None):
        raise BadInput("--max-drop and --data go together: the drop is measured on --data")
    if o.max_drop is not None and o.max_drop < 0:
        raise BadInput(f"--max-drop must be >= 0 (got {o.max_drop})")
    if o.qat_epochs < 0:
        raise BadInput(f"--qat-epochs must be >= 0 (got {o.qat_epochs})")
    if (o.qat_epochs or o.qat_data) and o.max_drop is None:
        raise BadInput("--qat-epochs and --qat-data are a step of --max-drop: give --data and "
                       "--max-drop (or train with `edgekit finetune --qat`)")
    if o.threads < 1:
        raise BadInput(f"--threads must be at least 1 (got {o.threads})")
    output = output or default_output(model, caps["suffix"], o.mode)
    check_output(output, force, caps["suffix"])
    needed = ("measuring top-1 on --data" if o.data else
              f"calibrating {o.mode}" if o.calib and o.mode in ("int8", "int16x8") else None)
    source = open_model(model, o.preprocessing, needed_for=needed)
    kwargs = dict(calib=o.calib, calib_size=o.calib_size, io_type=o.io_type, target=o.target,
                  engine=engine, opset=o.opset, exclude=list(o.keep_float),
                  speed_check=o.speed_check, threads=o.threads, force=force, unsafe=o.unsafe,
                  input_size=size, float_islands=o.float_islands)
    if o.max_drop is not None:
        from ..optimize.accuracy import accuracy_aware

        if o.max_float_layers is not None and o.max_float_layers < 0:
            raise BadInput(f"--max-float-layers must be >= 0 (got {o.max_float_layers})")
        reporter.progress(0, None, "accuracy-aware quantization")
        return accuracy_aware(entry.load(), source, output, o.mode, data=o.data, fmt=fmt,
                              max_float_layers=o.max_float_layers, max_drop=o.max_drop,
                              qat_epochs=o.qat_epochs, qat_data=o.qat_data,
                              progress=reporter.progress, **kwargs)
    reporter.progress(0, None if o.calib else 1,
                      f"calibrating {o.mode}" if o.calib else f"converting to {o.mode}")
    return entry.load()(source, output, o.mode, progress=reporter.progress, **kwargs)


class ExportOptions(Options):
    fmt: str = option("tflite", "Output format: tflite | onnx.", "--format")
    target: str = option("cpu", "tflite: cpu | gpu (fp16 plus a GPU-delegate check); onnx: cpu "
                         "(NHWC) | jetson (NCHW, static shape, for TensorRT).")
    opset: int = option(17, "ONNX opset (13-18).")
    nchw: Optional[bool] = option(None, "ONNX input layout (default: by --target).",
                                  "--nchw/--nhwc")
    slim: bool = option(True, "Simplify the ONNX graph (onnxslim).", "--slim/--no-slim")
    preprocessing: Optional[str] = option(None, PREP_HELP)
    input_size: Optional[str] = option(None, INPUT_SIZE_HELP)
    unsafe: bool = option(False, UNSAFE_HELP)


def export(model: Path, o: ExportOptions, output: Optional[Path], *, force: bool = False,
           reporter: Reporter = QUIET):
    """Export a float model for a runtime: TFLite (fp32; fp16 for --target gpu) or ONNX
    (checked against Keras before it is written).

    Returns the exported model's Artifact."""
    from ..core.artifacts import check_output
    from ..core.registry import EXPORTERS
    from ..core.shapes import parse_input_size

    exporter = EXPORTERS.get_entry(o.fmt)
    if o.target not in exporter.caps["targets"]:
        raise BadInput(f"unknown --target '{o.target}' for --format {o.fmt} "
                       f"(known: {', '.join(exporter.caps['targets'])})")
    options = {"target": o.target, "input_size": parse_input_size(o.input_size)}
    if o.fmt == "onnx":
        options.update(opset=o.opset, nchw=o.nchw, slim=o.slim)
    elif o.nchw is not None or o.opset != 17 or not o.slim:
        raise BadInput("--opset, --nchw/--nhwc and --no-slim apply to --format onnx")
    tag = "fp16" if (o.fmt, o.target) == ("tflite", "gpu") else "fp32"
    output = output or default_output(model, exporter.caps["suffix"], tag)
    check_output(output, force, exporter.caps["suffix"])
    source = open_model(model, o.preprocessing)
    reporter.status(f"exporting {model} to {o.fmt}")
    return exporter.load()(source, output, force=force, unsafe=o.unsafe, **options)


QUANTIZE = Stage("quantize", QuantizeOptions, quantize, default_suffix=".tflite",
                 onnx_in_onnx_out=True,
                 source_help="Float model: .keras, .h5, a SavedModel folder, or .onnx "
                             "(quantized to ONNX).",
                 output_help="Output file (default: MODEL_<mode>.<format>).")
EXPORT = Stage("export", ExportOptions, export, default_suffix=".tflite",
               source_help="Float model: .keras, .h5 or a SavedModel folder; .onnx to prepare "
                           "it for a target (--format onnx).",
               output_help="Output file (default: MODEL_<precision>.<format>).")
