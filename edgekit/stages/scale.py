"""The ``scale`` stage: the most accurate zoo model a device's budget affords."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.errors import BadInput, GateFailed
from .base import QUIET, Reporter, Stage, option
from .profile import LabOptions, SSHOptions

_GPU_RUNTIMES = ("tflite-gpu", "tensorrt", "onnxruntime-cuda")
_CPU_RUNTIMES = ("tflite-xnnpack", "onnxruntime-cpu")


class ScaleOptions(SSHOptions, LabOptions):
    device: Optional[str] = option(None, "Target device (see `devices list`).", "--device",
                                   "-d", cli_required=True)
    family: Optional[list[str]] = option(
        None, "Family to search (repeatable): mobilenet_v1, mobilenet_v2, mobilenet_v3_small, "
        "mobilenet_v3_large, efficientnet, efficientnet_lite. Default: all.", "--family", "-f")
    latency_ms: Optional[float] = option(None, "Latency budget in ms (default: the device's).")
    memory_mb: Optional[float] = option(None, "Peak activation memory budget in MB.")
    size_mb: Optional[float] = option(None, "Model file size budget in MB.")
    precision: Optional[str] = option(None, "fp32, fp16 or int8 (default: the device's budget "
                                      "precision).")
    accelerator: Optional[str] = option(None, "cpu or gpu (default: the device's).")
    runtime: Optional[str] = option(None, "Runtime, e.g. tflite-xnnpack, tflite-gpu, tensorrt "
                                    "(default: from the accelerator).")
    threads: Optional[int] = option(None, "CPU threads (default: the device's).")
    classes: int = option(1000, "Output classes of the model to build.")
    resolution: Optional[int] = option(None, "Search only this input resolution (your data's "
                                       "size); default: the family's grid.")
    top: int = option(10, "Candidates to show (and to measure with --measure).")
    measure: bool = option(False, "Build, convert and time the top candidates on the device's "
                           "runner; re-rank by measured latency.")


def scale(from_model: Optional[Path], o: ScaleOptions, output: Optional[Path], *,
          force: bool = False, reporter: Reporter = QUIET):
    """Find the most accurate MobileNet/EfficientNet that meets a device's latency, memory and
    size budget (predicted by the cost model; --measure times the best for real).

    Returns a SearchResult; with ``output``, the chosen model is written there (weights
    inherited from ``from_model`` where layer names and shapes match)."""
    from ..core.artifacts import check_output
    from ..estimate.search import GROUPS, group_of, search

    if o.device is None:
        raise BadInput("scale needs a device (--device)")
    if o.top < 1:
        raise BadInput("--top must be at least 1")
    if o.on_lab() and not o.measure:
        raise BadInput("--address and --lab say where --measure times the candidates: add "
                       "--measure")
    if output is not None:
        check_output(output, force, suffix=".keras")
    target = _target(o)
    source, family, classes = _source(from_model, o.family, o.classes)
    groups = list(dict.fromkeys(group_of(f) for f in family)) if family else list(GROUPS)
    cands = search(groups, target.model, target.budget, classes, o.resolution)
    fitting = [c for c in cands if c.fits]
    doc = {"schema": "edgekit.scale/1", "device": target.profile.name,
           "budget": {**vars(target.budget), "precision": target.model.precision,
                      "runtime": target.model.runtime, "threads": target.model.threads},
           "latency_model": target.model.as_dict(), "searched": len(cands),
           "fitting": len(fitting), "families": groups,
           "candidates": [c.as_dict() for c in fitting[:o.top]]}
    if not fitting:
        closest = cands[0]
        doc["closest"] = closest.as_dict()
        misses = "; ".join(f"{k} {v}" for k, v in closest.misses.items())
        raise _with(doc, GateFailed(
            f"no candidate of {', '.join(groups)} meets the budget on {target.profile.name}; "
            f"closest: {short_name(closest)} misses {misses}",
            hint="relax a budget or try another --family / --precision"))
    chosen = fitting[:o.top]
    tie = _tie(chosen)
    if tie:
        doc["tie"] = tie
    if o.measure:
        chosen = _measured(o, target, chosen, doc, reporter)
    best = chosen[0]
    doc["chosen"] = best.as_dict()
    art = None
    if output is not None:
        art, doc["output"] = _write(best, output, doc, source, force)
    result = _result(doc, art)
    result.found, result.best, result.target = fitting[:o.top], best, target
    return result


def _tie(ranked: list) -> Optional[dict]:
    """The candidates whose accuracy proxy is within its stated error of the first one's: they
    tie, so their order says nothing about accuracy. None when the first stands alone."""
    best = ranked[0].proxy
    tied = [c for c in ranked if abs(best.top1 - c.proxy.top1) <= max(best.error, c.proxy.error)]
    if len(tied) < 2:
        return None
    return {"candidates": [short_name(c) for c in tied],
            "top1_range": [min(c.proxy.top1 for c in tied), max(c.proxy.top1 for c in tied)],
            "broken_by": "the proxy's central value, then the lower predicted latency; the "
                         "difference is within the proxy's error, so measure them on your "
                         "data (finetune, then profile) to choose"}


class _Target:
    """The device, its latency model and the budget a search is for."""

    def __init__(self, profile, model, budget):
        self.profile, self.model, self.budget = profile, model, budget


def _target(o: ScaleOptions) -> _Target:
    """The device's profile, latency model and budget, each option falling back to the
    device's default budget."""
    from ..core.devices import load_device
    from ..estimate.latency import device_model
    from ..estimate.search import SearchBudget

    profile = load_device(o.device)
    b = profile.default_budget
    acc = o.accelerator or b.accelerator
    if acc not in ("cpu", "gpu"):
        raise BadInput(f"--accelerator must be cpu or gpu, not {acc!r}")
    prec = o.precision or (b.precision if acc == b.accelerator else "fp16")
    rt = o.runtime or _runtime(profile, acc, prec, b)
    budget = SearchBudget(o.latency_ms if o.latency_ms is not None else b.latency_ms.value,
                          o.memory_mb if o.memory_mb is not None else b.memory_mb.value,
                          o.size_mb if o.size_mb is not None else b.size_mb.value)
    for name, v in vars(budget).items():
        if v <= 0:
            raise BadInput(f"--{name.replace('_', '-')} must be positive")
    threads = o.threads or int(b.threads.value)
    return _Target(profile, device_model(profile, rt, prec, threads), budget)


def _runtime(profile, acc: str, prec: str, b) -> str:
    if acc == b.accelerator and f"{b.runtime}/{prec}" in profile.cost_model:
        return b.runtime
    wanted = _GPU_RUNTIMES if acc == "gpu" else _CPU_RUNTIMES
    for rt in profile.runtimes:
        if rt in wanted and f"{rt}/{prec}" in profile.cost_model:
            return rt
    have = ", ".join(profile.cost_model) or "none"
    raise BadInput(f"device '{profile.name}' has no {acc} runtime with a {prec} cost model "
                   f"(it has: {have})")


def _source(from_model: Optional[Path], family, classes: int):
    """(the --from model or None, the families to search, the classes to build)."""
    if from_model is None:
        return None, family, classes
    from .common import open_model

    # only its weights are read: its preprocessing does not matter here
    source = open_model(from_model, keras_for="--from", resolve_preprocessing=False)
    if not family:
        if "spec" not in source.meta:
            raise BadInput(f"{from_model}: edgekit did not build it, so its family is not "
                           "known: give --family (and --classes)")
        return source, [source.meta["spec"]["name"]], source.meta["spec"]["classes"]
    return source, family, classes


def _measured(o: ScaleOptions, target: _Target, chosen: list, doc: dict, reporter: Reporter):
    """The chosen candidates timed on the device's runner, those within the latency budget
    first by measured latency."""
    profile, budget = target.profile, target.budget
    rows = _time(o, profile, chosen, target.model, reporter)
    timed = [(c, r["median_ms"]) for c, r in zip(chosen, rows)]
    doc["measured"] = [dict(c.as_dict(), measured_ms=r["median_ms"],
                            **({"measured_on": r["measured_on"]} if "measured_on" in r else {}))
                       for c, r in zip(chosen, rows)]
    within = [c for c, m in timed if m <= budget.latency_ms]
    if not within:
        fastest, ms = min(timed, key=lambda cm: cm[1])
        raise _with(doc, GateFailed(
            f"none of the top {len(timed)} candidates meets {budget.latency_ms:g} ms when "
            f"measured; fastest: {short_name(fastest)} at {ms:.3g} ms (predicted "
            f"{fastest.latency_ms:.3g} ms)",
            hint="raise --top, relax the budget, or `edgekit calibrate` first"))
    return within


def _time(o: ScaleOptions, profile, chosen: list, model, reporter: Reporter) -> list[dict]:
    """The chosen candidates' timing rows: on the device's runner, or spread over a lab's
    devices of its kind (--address/--lab)."""
    from ..estimate.timing import measure_specs

    if model.runtime != "tflite-xnnpack":
        raise BadInput(f"--measure times TFLite models; runtime {model.runtime} is not measured yet")
    specs = [c.spec for c in chosen]
    if o.on_lab():
        from ..cluster.measure import LabTimer

        reporter.progress(0, len(chosen), f"measuring {len(chosen)} candidates on the lab")
        with LabTimer(profile.name, model.threads, address=o.address, lab=o.lab) as lab:
            return lab.measure(specs, model.precision, reporter.progress)
    runner = _runner(o, profile)
    reporter.progress(0, len(chosen), f"measuring {len(chosen)} candidates")
    with runner:
        return measure_specs(specs, model.precision, runner, model.threads, reporter.progress,
                             jobs=2)


def _runner(o: ScaleOptions, profile):
    from ..runtime.selection import make_runner, runner_kind, runner_options

    # only the SSH options say where to measure: scale's --accelerator is the search's
    ssh = runner_options(**{k: getattr(o, k) for k in SSHOptions.model_fields})
    if runner_kind(ssh, profile) == "adb":
        raise BadInput(f"--measure on '{profile.name}' needs a runner that times each model "
                       "through the harness (local or ssh); the adb runner is not used for "
                       "--measure yet")
    runner = make_runner(ssh, profile)
    if not runner.latency_meaningful:
        raise BadInput(f"--measure needs device timings; the {runner.name} runner's are not "
                       f"({runner.latency_note})")
    return runner


def _write(best, output: Path, doc: dict, source, force: bool):
    """Build ``best`` (weights from ``source`` where they fit) and write it: (its Artifact,
    the document's ``output`` record)."""
    from ..core.artifacts import open_artifact
    from ..models.build import build_model
    from ..models.zoo import write_model

    model = build_model(best.spec, seed=0)
    inherited = "random weights"
    parent = None
    if source is not None:
        from ..models.inherit import inherit, why_not
        from ..models.load import load_keras

        copied, total, misses = inherit(load_keras(source.path), model)
        inherited = f"{copied}/{total} weighted layers inherited from {source.path}"
        if misses:
            inherited += f" ({why_not(misses, total - copied)})"
        if copied == 0:
            inherited += "; the scaled model starts from random weights"
        parent = {"path": str(source.path), "sha256": source.sha256, "format": "keras"}
    stage = {"name": "scale", "config": {k: doc[k] for k in ("device", "budget", "families")}}
    search_record = {k: doc[k] for k in ("latency_model", "searched", "fitting", "candidates")}
    write_model(model, best.spec, output, stage=stage, parent=parent, force=force,
                scale={"prediction": best.as_dict(), **search_record,
                       **({"measured": doc["measured"]} if "measured" in doc else {})})
    return open_artifact(output), {"path": str(output), "inherited": inherited}


def short_name(c) -> str:
    """A candidate in a few characters: ``mnv2 w0.35 r96``, ``lite w1.1 d1.2 r260``."""
    short = {"efficientnet_lite": "lite", "efficientnet": "effnet",
             "mobilenet_v3_small": "mnv3-small", "mobilenet_v3_large": "mnv3-large",
             "mobilenet_v2": "mnv2", "mobilenet_v1": "mnv1"}[c.group]
    depth = f" d{_num(c.depth)}" if c.group.startswith("efficientnet") else ""
    return f"{short} w{_num(c.width)}{depth} r{c.resolution}"


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _with(doc: dict, exc: GateFailed) -> GateFailed:
    """``exc`` carrying the search so far (``--json`` prints it before the error)."""
    exc.result, exc.shown = _result(doc, None), False
    return exc


def _result(doc: dict, art):
    from ..core.results import SearchResult

    return SearchResult(doc, art)


SCALE = Stage("scale", ScaleOptions, scale, needs_device=True, source="from",
              measures_on_device="measure",
              source_help="Inherit weights from this Keras model where layer names and shapes "
                          "match (the rest start random; the output says why).",
              output_help="Write the chosen model here (.keras, random weights unless --from).")
