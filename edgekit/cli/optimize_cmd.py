"""``edgekit quantize`` and ``edgekit export``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import (FORCE_OPT, INPUT_SIZE_OPT, JSON_OPT, PREP_OPT, SAVE_RECIPE_OPT,
                      UNSAFE_OPT, console, default_output, emit_json, fmt_bytes, progress_bar, recipe_saver)


def _open_source(model: Path, preprocessing: Optional[str], needed_for: Optional[str]):
    """The source artifact with its preprocessing resolved (flag, sidecar, graph); unknown
    stops the command only when ``needed_for`` says what needs it."""
    from ..artifacts import open_artifact
    from ..preprocessing import resolve

    art = open_artifact(model)
    prep = resolve(art, preprocessing, needed_for=needed_for)
    art.meta.pop("preprocessing", None)
    if prep is not None:
        art.meta["preprocessing"] = prep
    return art


def _report(art, json_out: bool, what: str) -> None:
    from ..preprocessing import describe

    doc = {**art.meta, "schema": f"edgekit.{what}/1", "path": str(art.path)}
    if json_out:
        emit_json(doc)
        return
    m = art.meta
    io = m.get("input", {})
    console.print(f"wrote {art.path} ({m.get('precision')}, {fmt_bytes(m['size_bytes'])}, "
                  f"input {io.get('shape')} {io.get('dtype')})")
    console.print(f"  preprocessing: {describe(m.get('preprocessing'))}")
    if m.get("check"):
        console.print(f"  outputs match Keras on {m['check']['inputs']} inputs "
                      f"(max |diff| {m['check']['max_abs_diff_vs_keras']:.2g})")
    fid = m.get("fidelity_on_calibration")
    if fid:
        console.print(f"  agrees with the float model on {fid['top1_agreement']:.1f}% of "
                      f"{fid['n']} calibration inputs (output SNR {fid['snr_db'] or 0:.1f} dB)")
        for who, reasons in (fid.get("degenerate") or {}).items():
            who = "quantized model" if who == "model" else "float model"
            console.print(f"  [red]this check is NOT MEANINGFUL: the {who}'s "
                          f"{'; '.join(reasons)}[/]")
    acc = m.get("accuracy_aware")
    if acc:
        console.print(f"  top-1 on {acc['data']}: float {acc['float_top1']:.2f}%, "
                      f"quantized {acc['top1']:.2f}% (drop {acc['drop']:.2f} pt, limit "
                      f"{acc['max_drop']:.2f}); {len(acc['float_layers'])} layer(s) kept in float"
                      + ("" if acc["met"] else " -- LIMIT NOT MET, best achievable written"))
        cost = acc.get("latency_cost")
        if cost:
            console.print(f"  latency cost of the float layers: {cost['mixed_ms']:.2f} ms vs "
                          f"{cost['int8_ms']:.2f} ms fully int8 ({cost['slowdown']:.2f}x, "
                          f"measured on {cost['measured_on']})")
    sc = m.get("speed_check")
    if sc:
        console.print(f"  {sc['candidate_ms']:.2f} ms vs {sc['baseline']} {sc['baseline_ms']:.2f} ms "
                      f"({sc['speedup']:.2f}x, {sc['threads']} thread(s), {sc['runtime']}, "
                      f"measured on {sc['measured_on']})")
    for precision, cmd in (m.get("trtexec") or {}).items():
        console.print(f"  TensorRT {precision} on the device: {cmd}", soft_wrap=True)
    for issue in (m.get("compat") or {}).get("unsupported", [])[:10]:
        console.print(f"  [yellow]GPU delegate:[/] {issue['op']} {issue['name']}: {issue['reason']}")


def quantize(
    model: Path = typer.Argument(..., help="Float model: .keras, .h5, a SavedModel folder, or "
                                 ".onnx (quantized to ONNX)."),
    mode: str = typer.Option(..., "--mode", "-m",
                             help="int8 | fp16 | dynamic | int16x8 (ONNX: int8)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Output format: tflite | onnx "
                                      "(default: onnx for an .onnx model or -o x.onnx, else "
                                      "tflite)."),
    target: str = typer.Option("cpu", "--target",
                               help="Where it will run: cpu | gpu (TFLite GPU delegate) | "
                                    "tensorrt (Jetson; ONNX). Picks the quantization scheme."),
    engine: Optional[str] = typer.Option(None, "--engine",
                                         help="Quantizer: tflite (TFLite); ort (default) or "
                                              "nncf (ONNX, --target cpu)."),
    calib: Optional[str] = typer.Option(None, "--calib", help="Calibration data for int8/int16x8: "
                                        "folder, .npz, IDX file or fashion-mnist[-sample]:train."),
    calib_size: int = typer.Option(200, "--calib-size", help="Calibration samples (class-balanced)."),
    io_type: str = typer.Option("int8", "--io",
                                help="TFLite int8 model input/output type: int8 | uint8 | float."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (13-18)."),
    data: Optional[str] = typer.Option(None, "--data",
                                       help="Labelled validation data for --max-drop."),
    max_drop: Optional[float] = typer.Option(
        None, "--max-drop", help="Largest top-1 drop (percentage points) allowed on --data; "
        "the most sensitive layers are kept in float until it holds."),
    max_float_layers: Optional[int] = typer.Option(
        None, "--max-float-layers", help="With --max-drop: keep at most this many layers in float."),
    keep_float: list[str] = typer.Option([], "--keep-float",
                                         help="Layer/node name to keep in float (repeatable)."),
    speed_check: bool = typer.Option(True, "--speed-check/--no-speed-check",
                                     help="Time the result against the float model on this "
                                          "machine and warn if it is not faster (CPU targets)."),
    threads: int = typer.Option(1, "--threads", help="Threads for the speed check."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Output file (default: MODEL_<mode>.<format>)."),
    preprocessing: Optional[str] = PREP_OPT,
    input_size: Optional[str] = INPUT_SIZE_OPT,
    save_recipe: Optional[Path] = SAVE_RECIPE_OPT,
    force: bool = FORCE_OPT,
    unsafe: bool = UNSAFE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Post-training quantization to TFLite or ONNX, with the scheme that is fast on the
    target, an optional accuracy budget (--max-drop) and a speed check against float."""
    args = dict(locals())  # the parameters, for --save-recipe
    save = recipe_saver(save_recipe, "quantize", args, force)
    from ..artifacts import check_output
    from ..errors import BadInput
    from ..registry import QUANTIZERS

    from ..shapes import parse_input_size

    size = parse_input_size(input_size)
    fmt = fmt or ("onnx" if ".onnx" in (model.suffix.lower(), (output or model).suffix.lower())
                  else "tflite")
    if fmt == "tflite" and model.suffix.lower() == ".onnx":
        raise BadInput(f"{model}: an ONNX model is quantized to ONNX (--format onnx); "
                       "converting ONNX to TFLite is out of edgekit's scope")
    entry = QUANTIZERS.get_entry(fmt)
    caps = entry.caps
    for name, value, known in (("--mode", mode, caps["modes"]), ("--target", target, caps["targets"]),
                               ("--engine", engine or caps["engines"][0], caps["engines"])):
        if value not in known:
            raise BadInput(f"unknown {name} '{value}' for --format {fmt} (known: {', '.join(known)})")
    if (max_drop is None) != (data is None):
        raise BadInput("--max-drop and --data go together: the drop is measured on --data")
    if max_drop is not None and max_drop < 0:
        raise BadInput(f"--max-drop must be >= 0 (got {max_drop})")
    if threads < 1:
        raise BadInput(f"--threads must be at least 1 (got {threads})")
    output = output or default_output(model, caps["suffix"], mode)
    check_output(output, force, caps["suffix"])
    needed = ("measuring top-1 on --data" if data else
              f"calibrating {mode}" if calib and mode in ("int8", "int16x8") else None)
    source = _open_source(model, preprocessing, needed)
    kwargs = dict(calib=calib, calib_size=calib_size, io_type=io_type, target=target,
                  engine=engine or caps["engines"][0], opset=opset, exclude=list(keep_float),
                  speed_check=speed_check, threads=threads, force=force, unsafe=unsafe,
                  input_size=size)
    if max_drop is not None:
        from ..optimize.accuracy import accuracy_aware

        if max_float_layers is not None and max_float_layers < 1:
            raise BadInput(f"--max-float-layers must be at least 1 (got {max_float_layers})")
        with progress_bar("accuracy-aware quantization") as update:
            art = accuracy_aware(entry.load(), source, output, mode, data=data, fmt=fmt,
                                 max_float_layers=max_float_layers,
                                 max_drop=max_drop, progress=update, **kwargs)
    else:
        with progress_bar(f"calibrating {mode}" if calib else f"converting to {mode}") as update:
            if not calib:
                update(0, 1)
            art = entry.load()(source, output, mode, progress=update, **kwargs)
    save()
    _report(art, json_out, "quantize")


def export(
    model: Path = typer.Argument(..., help="Float model: .keras, .h5 or a SavedModel folder; "
                                 ".onnx to prepare it for a target (--format onnx)."),
    fmt: str = typer.Option("tflite", "--format", help="Output format: tflite | onnx."),
    target: str = typer.Option("cpu", "--target",
                               help="tflite: cpu | gpu (fp16 plus a GPU-delegate check); "
                                    "onnx: cpu (NHWC) | jetson (NCHW, static shape, for TensorRT)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset (13-18)."),
    nchw: Optional[bool] = typer.Option(None, "--nchw/--nhwc",
                                        help="ONNX input layout (default: by --target)."),
    slim: bool = typer.Option(True, "--slim/--no-slim", help="Simplify the ONNX graph (onnxslim)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Output file (default: MODEL_<precision>.<format>)."),
    preprocessing: Optional[str] = PREP_OPT,
    input_size: Optional[str] = INPUT_SIZE_OPT,
    save_recipe: Optional[Path] = SAVE_RECIPE_OPT,
    force: bool = FORCE_OPT,
    unsafe: bool = UNSAFE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Export a float model for a runtime: TFLite (fp32; fp16 for --target gpu) or ONNX
    (checked against Keras before it is written)."""
    args = dict(locals())  # the parameters, for --save-recipe
    save = recipe_saver(save_recipe, "export", args, force)
    from ..artifacts import check_output
    from ..errors import BadInput
    from ..registry import EXPORTERS

    exporter = EXPORTERS.get_entry(fmt)
    if target not in exporter.caps["targets"]:
        raise BadInput(f"unknown --target '{target}' for --format {fmt} "
                       f"(known: {', '.join(exporter.caps['targets'])})")
    from ..shapes import parse_input_size

    options = {"target": target, "input_size": parse_input_size(input_size)}
    if fmt == "onnx":
        options.update(opset=opset, nchw=nchw, slim=slim)
    elif nchw is not None or opset != 17 or not slim:
        raise BadInput("--opset, --nchw/--nhwc and --no-slim apply to --format onnx")
    tag = "fp16" if (fmt, target) == ("tflite", "gpu") else "fp32"
    output = output or default_output(model, exporter.caps["suffix"], tag)
    check_output(output, force, exporter.caps["suffix"])
    source = _open_source(model, preprocessing, None)
    with console.status(f"exporting {model} to {fmt}"):
        art = exporter.load()(source, output, force=force, unsafe=unsafe, **options)
    save()
    _report(art, json_out, "export")
