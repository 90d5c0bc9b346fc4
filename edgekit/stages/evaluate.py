"""The stages that read models and results: ``inspect``, ``predict`` and ``compare``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.errors import BadInput, GateFailed
from .base import QUIET, Options, Reporter, Stage, option
from .common import INPUT_SIZE_HELP, PREP_HELP


class InspectOptions(Options):
    layers: bool = option(False, "Also list every layer with work.")
    check: list[str] = option([], "Runtime compatibility check, op by op (repeatable): gpu "
                              "(TFLite GPU delegate), xnnpack (TFLite int8 on XNNPACK), tensorrt "
                              "(ONNX for TensorRT).")
    input_size: Optional[str] = option(None, INPUT_SIZE_HELP)


def inspect(model: Path, o: InspectOptions, output: Optional[Path] = None, *,
            force: bool = False, reporter: Reporter = QUIET):
    """Parameters, MACs, size, input/output spec, precision and op histogram of a model, and
    which ops a runtime would not run (--check).

    Returns a Result of the ``edgekit.inspect/1`` document."""
    from ..core.artifacts import open_artifact
    from ..core.results import Result
    from ..core.shapes import parse_input_size
    from ..evaluate.analyze import analyze

    art = open_artifact(model)
    reporter.status(f"reading {model}")
    info = analyze(art.path, art.format, parse_input_size(o.input_size))
    if o.check:
        from ..formats.compat import check

        info["checks"] = {c: check(art.path, art.format, c) for c in dict.fromkeys(o.check)}
    doc = {"schema": "edgekit.inspect/1", "path": str(model), "sha256": art.sha256, **info,
           "preprocessing": _preprocessing_of(art),
           "sidecar": {k: art.meta[k] for k in ("preprocessing", "labels", "parent", "stage",
                                                 "precision") if k in art.meta} or None}
    result = Result(doc)
    result.show_layers = o.layers
    return result


def _preprocessing_of(art) -> dict:
    """The artifact's preprocessing (sidecar, else its graph), or why it is unknown."""
    from ..core.preprocessing import infer, resolve

    if art.preprocessing:
        return resolve(art)
    prep, why = infer(art)
    return prep or {"name": "unknown", "why": why}


class PredictOptions(Options):
    images: list[Path] = option(..., "Image files (PNG, JPEG, ...).", argument=True)
    top: int = option(5, "How many classes to show per image.", "--top", "-k")
    preprocessing: Optional[str] = option(None, PREP_HELP)
    threads: Optional[int] = option(None, "CPU threads (default: all cores).")
    input_size: Optional[str] = option(None, INPUT_SIZE_HELP)


def predict(model: Path, o: PredictOptions, output: Optional[Path] = None, *,
            force: bool = False, reporter: Reporter = QUIET):
    """Classify images: the top classes with their scores, for each image.

    Returns a Result of the ``edgekit.predict/1`` document (``.predictions``)."""
    from ..core.artifacts import open_artifact
    from ..core.results import Result
    from ..core.shapes import parse_input_size
    from ..evaluate.predict import predict as classify

    art = open_artifact(model)
    reporter.status(f"running {model.name} on {len(o.images)} image(s)")
    result = Result(classify(art, o.images, top=o.top, preprocessing=o.preprocessing,
                             threads=o.threads, input_size=parse_input_size(o.input_size)))
    result.model = model
    return result


class CompareOptions(Options):
    base: Path = option(..., "Baseline result (edgekit profile ... -o base.json).",
                        argument=True)
    new: Path = option(..., "New result to check against the baseline.", argument=True)
    max_accuracy_drop: float = option(0.5, "Largest allowed top-1 drop, in points (for like "
                                      "against like; int8 on x86 vs Arm differed by 0.8 on "
                                      "1,000 images).")
    max_agreement_drop: float = option(1.0, "Largest allowed drop of top-1 agreement with the "
                                       "reference, in points.")
    max_latency_regression: str = option("10%", "Largest allowed p50 latency growth (same CPU "
                                         "and threads only).")
    max_size_growth: str = option("5%", "Largest allowed model size growth.")
    max_memory_growth: str = option("20%", "Largest allowed peak memory growth.")
    min_prediction_agreement: Optional[str] = option(
        None, "Smallest allowed share of images with the same top-1 class in both results "
              "(default: reported, not gated).")


def compare(_: None, o: CompareOptions, output: Optional[Path] = None, *, force: bool = False,
            reporter: Reporter = QUIET):
    """Compare two profile results (accuracy, fidelity, latency, size, memory) against
    thresholds; exit 1 if any metric regressed, so a CI job fails.

    Returns a Result of the ``edgekit.compare/1`` document (``.passed``, ``.rows``); a
    regression raises GateFailed carrying that result (``.result``)."""
    from ..core.results import Result
    from ..evaluate.compare import Limits, compare as check, load_result, parse_percent

    for name, v in (("--max-accuracy-drop", o.max_accuracy_drop),
                    ("--max-agreement-drop", o.max_agreement_drop)):
        if v < 0:
            raise BadInput(f"{name} must not be negative (got {v:g})")
    limits = Limits(o.max_accuracy_drop, o.max_agreement_drop,
                    parse_percent(o.max_latency_regression, "--max-latency-regression"),
                    parse_percent(o.max_size_growth, "--max-size-growth"),
                    parse_percent(o.max_memory_growth, "--max-memory-growth"),
                    None if o.min_prediction_agreement is None else
                    parse_percent(o.min_prediction_agreement, "--min-prediction-agreement"))
    result = Result(check(load_result(o.base), load_result(o.new), limits))
    result.base, result.new = o.base, o.new
    if not result.passed:
        exc = GateFailed(f"regression in {', '.join(result.regressions)} ({o.new} vs {o.base})")
        exc.result, exc.shown = result, True  # the table says what regressed
        raise exc
    return result


class ReportOptions(Options):
    inputs: list[Path] = option(..., "run.json of `edgekit run`, run or sweep folders "
                                "(runs/latest/), `edgekit profile` results and artifact "
                                "sidecars (*.json).", argument=True)


def report(_: None, o: ReportOptions, output: Optional[Path] = None, *, force: bool = False,
           reporter: Reporter = QUIET):
    """Tables of every variant (size, MACs, latency measured or predicted, accuracy,
    fidelity) and plots: accuracy vs latency with the Pareto front, MACs per block, and the
    before/after of each stage.

    Returns a Result of the ``edgekit.report/1`` document; with ``output`` (.html, or .md with
    PNGs beside it) also writes the report (``.files``)."""
    from ..core.artifacts import check_output, write_bytes_atomic, write_text_atomic
    from ..core.results import Result
    from ..evaluate.report import collect, markdown, plots, to_html

    if output is not None:
        if output.suffix not in (".html", ".md"):
            raise BadInput(f"{output}: the report must be a .html or .md file")
        check_output(output, force)
    doc = collect(o.inputs)
    if output is not None:
        reporter.status("plotting")
        pngs = plots(doc)
        if output.suffix == ".html":
            write_text_atomic(output, to_html(doc, pngs), force=True)
            doc["files"] = [str(output)]
        else:
            names = {k: output.with_name(f"{output.stem}-{k}.png") for k in pngs}
            for path in names.values():
                check_output(path, force)
            for k, path in names.items():
                write_bytes_atomic(path, pngs[k], force=True)
            write_text_atomic(output, markdown(doc, {k: p.name for k, p in names.items()}),
                              force=True)
            doc["files"] = [str(output), *map(str, names.values())]
    return Result(doc)


INSPECT = Stage("inspect", InspectOptions, inspect, makes_model=False,
                source_help="A .keras/.h5 file, SavedModel folder, .tflite or .onnx.",
                output=False)
PREDICT = Stage("predict", PredictOptions, predict, makes_model=False,
                source_help="A .keras, .tflite or .onnx model (its sidecar gives the "
                            "preprocessing and the class names).", output=False)
COMPARE = Stage("compare", CompareOptions, compare, makes_model=False, source="none",
                output=False)
REPORT = Stage("report", ReportOptions, report, makes_model=False, source="none",
               default_suffix=".html", recipe_output=False,
               output_help="report.html (self-contained) or report.md (PNGs beside it). "
                           "Default: a table on the terminal.")
