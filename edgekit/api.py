"""edgekit from Python: each stage as a function, the same stage the command runs.

    import edgekit as ek
    m = ek.build("mobilenet_v2", width=0.35, resolution=96, classes=10, out="m.keras")
    q = ek.quantize(m, mode="int8", calib="fashion-mnist-sample:train", out="m_int8.tflite")
    r = ek.profile(q, data="fashion-mnist-sample:test", reference=m)
    print(r.latency.p50_ms, r.accuracy.top1, r.fidelity.top1_agreement)

Also ``scale``, ``prune``, ``finetune``, ``export``, ``inspect``, ``predict``, ``compare``,
``report``, ``calibrate`` and ``run`` (a recipe). Options go by their Python names (``calib_size=100`` for ``--calib-size 100``); a stage's
options model (``edgekit.stages.*.XOptions``) lists them with types, defaults and help, as
``edgekit X --help`` does. A model may be given as a path or as an earlier stage's result.
Every problem is an ``edgekit.EdgekitError`` (``BadInput``, ``EnvironmentProblem``,
``GateFailed``) with a one-line message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

Model = Union[str, Path, Any]  # a path, or an Artifact (what build, quantize ... return)


def _stage(name: str):
    from .stages import get

    return get(name)


def build(family: str, *, out: Union[str, Path], force: bool = False, **options: Any):
    """Build a zoo family (``edgekit zoo list``) at any width, depth and resolution into the
    .keras file ``out``: random weights (``seed``) or ImageNet ones (``weights=``). Options:
    ``width``, ``depth``, ``resolution``, ``classes``, ``dropout``, ``seed``, ``weights``.
    Returns the model's Artifact (``.path``, ``.meta``: its sidecar)."""
    return _stage("build")(None, out=out, force=force, family=family, **options)


def scale(device: str, *, from_model: Optional[Model] = None,
          out: Optional[Union[str, Path]] = None, force: bool = False, **options: Any):
    """The most accurate zoo model that meets ``device``'s budget (``latency_ms``,
    ``memory_mb``, ``size_mb``; default the device's), predicted by the cost model
    (``measure=True`` times the best). With ``out``, the chosen model is written, weights
    inherited from ``from_model`` where they fit. Returns a SearchResult (``.chosen``,
    ``.candidates``, ``.artifact``, ``.to_json()``)."""
    return _stage("scale")(from_model, out=out, force=force, device=device, **options)


def prune(model: Model, *, out: Optional[Union[str, Path]] = None, force: bool = False,
          **options: Any):
    """Prune a Keras model: ``sparsity=`` (unstructured) or ``structured=True, ratio=``
    (whole channels), fine-tuned on ``data``. Refuses a result more than ``max_drop`` points
    worse than the start. Returns the pruned model's Artifact."""
    return _stage("prune")(model, out=out, force=force, **options)


def finetune(model: Model, *, out: Optional[Union[str, Path]] = None, force: bool = False,
             **options: Any):
    """Fine-tune a Keras model on ``data`` (new head for ``classes``, ``freeze``,
    ``augment``), optionally distilled from ``teacher``; keeps the best validation weights.
    Returns the trained model's Artifact."""
    return _stage("finetune")(model, out=out, force=force, **options)


def quantize(model: Model, *, out: Optional[Union[str, Path]] = None, force: bool = False,
             **options: Any):
    """Post-training quantization (``mode``: int8, fp16, dynamic, int16x8) to TFLite or ONNX
    (``fmt``), calibrated on ``calib``; ``max_drop`` with ``data`` keeps the most sensitive
    layers in float until top-1 holds. Returns the quantized model's Artifact."""
    return _stage("quantize")(model, out=out, force=force, **options)


def export(model: Model, *, out: Optional[Union[str, Path]] = None, force: bool = False,
           **options: Any):
    """Export a float model to TFLite or ONNX (``fmt``) for a ``target`` (cpu, gpu, jetson),
    checked against the source before it is written. Returns the exported model's Artifact."""
    return _stage("export")(model, out=out, force=force, **options)


def profile(model: Model, *, out: Optional[Union[str, Path]] = None, force: bool = False,
            **options: Any):
    """Measure a model's latency and memory on a runner (local by default; ``host=`` for SSH,
    ``serial=`` for adb), its accuracy on ``data`` and its fidelity to ``reference``. Returns a
    ProfileResult (``.latency.p50_ms``, ``.accuracy.top1``, ``.fidelity.top1_agreement``,
    ``.to_json()``); with ``out``, also written there as JSON."""
    return _stage("profile")(model, out=out, force=force, **options)


def inspect(model: Model, **options: Any):
    """Parameters, MACs, size, inputs and outputs, precision and op histogram of a model;
    ``check=["gpu"]`` (or xnnpack, tensorrt) lists the ops a runtime would not run. Returns a
    Result (``.macs``, ``.params``, ``.to_json()``)."""
    return _stage("inspect")(model, **options)


def predict(model: Model, images: list, **options: Any):
    """The ``top`` classes with their scores for each image file. Returns a Result
    (``.predictions``, ``.to_json()``)."""
    return _stage("predict")(model, images=images, **options)


def compare(base: Union[str, Path], new: Union[str, Path], **options: Any):
    """Compare two profile results (files written by ``profile(out=...)``) against limits
    (``max_accuracy_drop``, ``max_latency_regression="10%"`` ...). Returns a Result
    (``.passed``, ``.rows``); a regression raises GateFailed, whose ``.result`` has the rows."""
    return _stage("compare")(None, base=base, new=new, **options)


def report(inputs: list, *, out: Optional[Union[str, Path]] = None, force: bool = False):
    """Every variant of runs, profile results and sidecars (``inputs``: their .json files) in
    one table; with ``out`` (.html, or .md with PNGs) also the plots. Returns a Result
    (``.variants``, ``.files``)."""
    return _stage("report")(None, out=out, force=force, inputs=inputs)


def calibrate(device: str = "host", *, out: Optional[Union[str, Path]] = None,
              **options: Any):
    """Time probe networks on ``device`` (this machine, or ``host=`` over SSH), fit its
    latency model per ``precision`` and write the measured profile (default: the user
    override folder). Returns a Result (``.fits``, ``.written``)."""
    return _stage("calibrate")(None, out=out, device=device, **options)


def run(recipe: Union[str, Path], *, runs_dir: Union[str, Path] = "runs",
        cache_dir: Optional[Union[str, Path]] = None, use_cache: bool = True):
    """Run a recipe (a YAML file, or the name of a shipped one such as
    ``"fashion-mnist-demo"``) as ``edgekit run`` does: the same stage cache
    (``RUNS/.cache``) and run folder (``RUNS/NAME-TIMESTAMP``, ``RUNS/latest``). Returns the
    run document as a result (``.status``, ``.stages``, ``.gates``, ``.run_dir``); a failed gate
    raises GateFailed once the run folder is complete."""
    from .recipes.runner import open_recipe
    from .core.results import RunResult

    runs = Path(runs_dir)
    pipe = open_recipe(str(recipe), Path(cache_dir) if cache_dir else runs / ".cache")
    return RunResult(pipe.run(runs, use_cache=use_cache))
