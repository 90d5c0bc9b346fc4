"""``edgekit quantize`` and ``edgekit export``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import (FORCE_OPT, JSON_OPT, PREP_OPT, UNSAFE_OPT, console, default_output,
                      emit_json, fmt_bytes, progress_bar)


def _open_source(model: Path, preprocessing: Optional[str]):
    from ..artifacts import open_artifact
    from ..runtime.profile import resolve_preprocessing

    art = open_artifact(model)
    art.meta["preprocessing"] = resolve_preprocessing(art, preprocessing)
    return art


def _report(art, json_out: bool, what: str) -> None:
    doc = {"schema": f"edgekit.{what}/1", "output": str(art.path), **art.meta}
    if json_out:
        emit_json(doc)
        return
    io = art.meta.get("input", {})
    console.print(f"wrote {art.path} ({art.meta.get('precision')}, "
                  f"{fmt_bytes(art.meta['size_bytes'])}, input {io.get('shape')} {io.get('dtype')})")


def quantize(
    model: Path = typer.Argument(..., help="Float model: .keras, .h5 or a SavedModel folder."),
    mode: str = typer.Option(..., "--mode", "-m", help="int8 | fp16 | dynamic | int16x8."),
    fmt: str = typer.Option("tflite", "--format", help="Output format (tflite)."),
    calib: Optional[str] = typer.Option(None, "--calib", help="Calibration data for int8/int16x8: "
                                        "folder, .npz, IDX file or fashion-mnist[-sample]:train."),
    calib_size: int = typer.Option(200, "--calib-size", help="Calibration samples (class-balanced)."),
    io_type: str = typer.Option("int8", "--io", help="int8 model input/output type: int8 | uint8 | float."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Output file (default: MODEL_<mode>.tflite)."),
    preprocessing: Optional[str] = PREP_OPT,
    force: bool = FORCE_OPT,
    unsafe: bool = UNSAFE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Post-training quantization to a TFLite model (calibrated for int8 and int16x8)."""
    from ..errors import BadInput
    from ..registry import QUANTIZERS

    engine = QUANTIZERS.get_entry(fmt)
    if mode not in engine.caps["modes"]:
        raise BadInput(f"unknown --mode '{mode}' for {fmt} (known: {', '.join(engine.caps['modes'])})")
    output = output or default_output(model, ".tflite", mode)
    from ..artifacts import check_output
    check_output(output, force)
    source = _open_source(model, preprocessing)
    with progress_bar(f"calibrating {mode}" if calib else f"converting to {mode}") as update:
        if not calib:
            update(0, 1)
        art = engine.load()(source, output, mode, calib=calib, calib_size=calib_size,
                            io_type=io_type, force=force, unsafe=unsafe, progress=update)
    _report(art, json_out, "quantize")


def export(
    model: Path = typer.Argument(..., help="Float model: .keras, .h5 or a SavedModel folder."),
    fmt: str = typer.Option("tflite", "--format", help="Output format (tflite)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Output file (default: MODEL_fp32.tflite)."),
    preprocessing: Optional[str] = PREP_OPT,
    force: bool = FORCE_OPT,
    unsafe: bool = UNSAFE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Export a float model (fp32) for a runtime."""
    from ..artifacts import check_output
    from ..registry import EXPORTERS

    exporter = EXPORTERS.get_entry(fmt)
    output = output or default_output(model, exporter.caps["suffix"], "fp32")
    check_output(output, force)
    source = _open_source(model, preprocessing)
    with console.status(f"exporting {model} to {fmt}"):
        art = exporter.load()(source, output, force=force, unsafe=unsafe)
    _report(art, json_out, "export")
