"""``edgekit scale``: search the zoo for the most accurate model a device's budget affords."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import (FORCE_OPT, HOST_OPT, IDENTITY_OPT, JSON_OPT, PORT_OPT, REMOTE_PYTHON_OPT,
                      SAVE_RECIPE_OPT, SSH_OPTION_OPT, console, emit_json, fmt_count,
                      make_runner, progress_bar, recipe_saver, runner_name)

_GPU_RUNTIMES = ("tflite-gpu", "tensorrt", "onnxruntime-cuda")
_CPU_RUNTIMES = ("tflite-xnnpack", "onnxruntime-cpu")


def scale(
    device: str = typer.Option(..., "--device", "-d", help="Target device (see `devices list`)."),
    family: Optional[list[str]] = typer.Option(
        None, "--family", "-f", help="Family to search (repeatable): mobilenet_v1, mobilenet_v2, "
        "mobilenet_v3_small, mobilenet_v3_large, efficientnet, efficientnet_lite. Default: all."),
    latency_ms: Optional[float] = typer.Option(None, help="Latency budget in ms (default: the "
                                               "device's)."),
    memory_mb: Optional[float] = typer.Option(None, help="Peak activation memory budget in MB."),
    size_mb: Optional[float] = typer.Option(None, help="Model file size budget in MB."),
    precision: Optional[str] = typer.Option(None, help="fp32, fp16 or int8 (default: the "
                                            "device's budget precision)."),
    accelerator: Optional[str] = typer.Option(None, help="cpu or gpu (default: the device's)."),
    runtime: Optional[str] = typer.Option(None, help="Runtime, e.g. tflite-xnnpack, tflite-gpu, "
                                          "tensorrt (default: from the accelerator)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads (default: the device's)."),
    classes: int = typer.Option(1000, help="Output classes of the model to build."),
    resolution: Optional[int] = typer.Option(None, help="Search only this input resolution "
                                             "(your data's size); default: the family's grid."),
    top: int = typer.Option(10, help="Candidates to show (and to measure with --measure)."),
    measure: bool = typer.Option(False, "--measure", help="Build, convert and time the top "
                                 "candidates on the device's runner; re-rank by measured latency."),
    host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT,
    identity: Optional[Path] = IDENTITY_OPT,
    ssh_option: list[str] = SSH_OPTION_OPT,
    remote_python: str = REMOTE_PYTHON_OPT,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the chosen model "
                                          "here (.keras, random weights unless --from)."),
    from_model: Optional[Path] = typer.Option(None, "--from", help="Inherit weights from this "
                                              "Keras model where layer names and shapes match "
                                              "(the rest start random; the output says why)."),
    save_recipe: Optional[Path] = SAVE_RECIPE_OPT,
    force: bool = FORCE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Find the most accurate MobileNet/EfficientNet that meets a device's latency, memory and
    size budget (predicted by the cost model; --measure times the best for real)."""
    args = dict(locals())  # the parameters, for --save-recipe
    save = recipe_saver(save_recipe, "scale", args, force)
    from ..devices import load_device
    from ..artifacts import check_output
    from ..errors import BadInput, GateFailed
    from ..latency import device_model
    from ..scale import GROUPS, Budget, group_of, search

    if top < 1:
        raise BadInput("--top must be at least 1")
    if output is not None:
        check_output(output, force, suffix=".keras")
    profile = load_device(device)
    b = profile.default_budget
    acc = accelerator or b.accelerator
    if acc not in ("cpu", "gpu"):
        raise BadInput(f"--accelerator must be cpu or gpu, not {acc!r}")
    prec = precision or (b.precision if acc == b.accelerator else "fp16")
    rt = runtime or _runtime(profile, acc, prec, b)
    n_threads = threads or int(b.threads.value)
    budget = Budget(latency_ms if latency_ms is not None else b.latency_ms.value,
                    memory_mb if memory_mb is not None else b.memory_mb.value,
                    size_mb if size_mb is not None else b.size_mb.value)
    for name, v in vars(budget).items():
        if v <= 0:
            raise BadInput(f"--{name.replace('_', '-')} must be positive")
    model = device_model(profile, rt, prec, n_threads)
    source = _open_from(from_model)
    if source is not None and not family:
        if "spec" not in source.meta:
            raise BadInput(f"{from_model}: edgekit did not build it, so its family is not "
                           "known: give --family (and --classes)")
        family = [source.meta["spec"]["name"]]
        classes = source.meta["spec"]["classes"]
    groups = list(dict.fromkeys(group_of(f) for f in family)) if family else list(GROUPS)
    cands = search(groups, model, budget, classes, resolution)
    fitting = [c for c in cands if c.fits]
    doc = {"schema": "edgekit.scale/1", "device": profile.name,
           "budget": {**vars(budget), "precision": prec, "runtime": rt, "threads": n_threads},
           "latency_model": model.as_dict(), "searched": len(cands), "fitting": len(fitting),
           "families": groups, "candidates": [c.as_dict() for c in fitting[:top]]}
    if not fitting:
        closest = cands[0]
        doc["closest"] = closest.as_dict()
        if json_out:
            emit_json(doc)
        misses = "; ".join(f"{k} {v}" for k, v in closest.misses.items())
        raise GateFailed(f"no candidate of {', '.join(groups)} meets the budget on "
                         f"{profile.name}; closest: {_name(closest)} misses {misses}",
                         hint="relax a budget or try another --family / --precision")
    chosen = fitting[:top]
    if measure:
        if runner_name(None, host, None, profile) == "adb":
            raise BadInput(f"--measure on '{profile.name}' needs a runner that times each model "
                           "through the harness (local or ssh); the adb runner is not used for "
                           "--measure yet")
        runner = make_runner(None, host, port, identity, ssh_option, remote_python, profile)
        chosen = _measure(runner, chosen, model, n_threads, json_out)
        doc["measured"] = [dict(c.as_dict(), measured_ms=m) for c, m in chosen]
        within = [c for c, m in chosen if m <= budget.latency_ms]
        if not within:
            fastest, ms = min(chosen, key=lambda cm: cm[1])
            if json_out:
                emit_json(doc)
            raise GateFailed(f"none of the top {len(chosen)} candidates meets "
                             f"{budget.latency_ms:g} ms when measured; fastest: "
                             f"{_name(fastest)} at {ms:.3g} ms (predicted "
                             f"{fastest.latency_ms:.3g} ms)",
                             hint="raise --top, relax the budget, or `edgekit calibrate` first")
        chosen = within
    best = chosen[0]
    doc["chosen"] = best.as_dict()
    if output is not None:
        doc["output"] = _write(best, output, profile, doc, source, force)
    save()
    if json_out:
        emit_json(doc)
        return
    _table(fitting[:top], model, budget, doc, profile)
    if output is not None:
        console.print(f"wrote {output}: {_name(best)} ({doc['output']['inherited']})")
    else:
        console.print(f"best: {_name(best)}. Add -o FILE.keras to build it.")


def _runtime(profile, acc: str, prec: str, b) -> str:
    from ..errors import BadInput

    if acc == b.accelerator and f"{b.runtime}/{prec}" in profile.cost_model:
        return b.runtime
    wanted = _GPU_RUNTIMES if acc == "gpu" else _CPU_RUNTIMES
    for rt in profile.runtimes:
        if rt in wanted and f"{rt}/{prec}" in profile.cost_model:
            return rt
    have = ", ".join(profile.cost_model) or "none"
    raise BadInput(f"device '{profile.name}' has no {acc} runtime with a {prec} cost model "
                   f"(it has: {have})")


def _name(c) -> str:
    short = {"efficientnet_lite": "lite", "efficientnet": "effnet",
             "mobilenet_v3_small": "mnv3-small", "mobilenet_v3_large": "mnv3-large",
             "mobilenet_v2": "mnv2", "mobilenet_v1": "mnv1"}[c.group]
    depth = f" d{_num(c.depth)}" if c.group.startswith("efficientnet") else ""
    return f"{short} w{_num(c.width)}{depth} r{c.resolution}"


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _open_from(path: Optional[Path]):
    if path is None:
        return None
    from ..artifacts import open_artifact
    from ..errors import BadInput

    art = open_artifact(path)
    if art.format != "keras":
        raise BadInput(f"{path}: --from needs a Keras model (.keras or .h5), not {art.format}")
    return art


def _measure(runner, chosen, model, threads: int, quiet: bool):
    from ..errors import BadInput
    from ..latency_bench import measure_specs

    if not runner.latency_meaningful:
        raise BadInput(f"--measure needs device timings; the {runner.name} runner's are not "
                       f"({runner.latency_note})")
    if model.runtime != "tflite-xnnpack":
        raise BadInput(f"--measure times TFLite models; runtime {model.runtime} is not measured yet")
    with progress_bar(f"measuring {len(chosen)} candidates", quiet) as update, runner:
        rows = measure_specs([c.spec for c in chosen], model.precision, runner, threads,
                             update, jobs=2)
    return [(c, r["median_ms"]) for c, r in zip(chosen, rows)]


def _write(best, output: Path, profile, doc: dict, source, force: bool) -> dict:
    from ..models.build import build_model
    from ..models.zoo import write_model

    model = build_model(best.spec, seed=0)
    inherited = "random weights"
    parent = None
    if source is not None:
        from ..models.load import load_keras

        src = load_keras(source.path)
        copied, total, misses = _inherit(src, model)
        inherited = f"{copied}/{total} weighted layers inherited from {source.path}"
        if misses:
            inherited += f" ({_why_not(misses, total - copied)})"
        if copied == 0:
            inherited += "; the scaled model starts from random weights"
        parent = {"path": str(source.path), "sha256": source.sha256, "format": "keras"}
    stage = {"name": "scale", "config": {k: doc[k] for k in ("device", "budget", "families")}}
    search_record = {k: doc[k] for k in ("latency_model", "searched", "fitting", "candidates")}
    write_model(model, best.spec, output, stage=stage, parent=parent, force=force,
                scale={"prediction": best.as_dict(), **search_record,
                       **({"measured": doc["measured"]} if "measured" in doc else {})})
    return {"path": str(output), "inherited": inherited}


def _inherit(src, dst) -> tuple[int, int, list[tuple[str, str]]]:
    """Copy weights layer by layer where the name and every weight shape match: (copied,
    weighted layers, (layer, why not) for each one not copied)."""
    from ..models.load import leaf_layers

    by_name = {layer.name: layer for layer in leaf_layers(src)}
    copied = total = 0
    misses = []
    for layer in leaf_layers(dst):
        weights = layer.get_weights()
        if not weights:
            continue
        total += 1
        other = by_name.get(layer.name)
        if other is None:
            misses.append((layer.name, "no layer of that name"))
            continue
        theirs = other.get_weights()
        if len(theirs) == len(weights) and all(a.shape == b.shape for a, b in zip(theirs, weights)):
            layer.set_weights(theirs)
            copied += 1
        else:
            misses.append((layer.name, f"shapes {[tuple(w.shape) for w in theirs]} there, "
                                       f"{[tuple(w.shape) for w in weights]} here"))
    return copied, total, misses


def _why_not(misses: list[tuple[str, str]], n: int) -> str:
    """Why layers were not inherited, in one phrase: how many by missing name, how many by
    shape, with the first of each."""
    by_name = [m for m in misses if m[1] == "no layer of that name"]
    by_shape = [m for m in misses if m[1] != "no layer of that name"]
    parts = []
    if by_name:
        parts.append(f"{len(by_name)} layer name(s) of the zoo's builder not in it, e.g. "
                     f"'{by_name[0][0]}'")
    if by_shape:
        parts.append(f"{len(by_shape)} with other weight shapes, e.g. '{by_shape[0][0]}': "
                     f"{by_shape[0][1]}")
    return f"{n} not inherited: " + "; ".join(parts)


def _table(rows, model, budget, doc: dict, profile) -> None:
    from rich.table import Table

    measured = {(m["family"], m["width"], m["depth"], m["resolution"]): m["measured_ms"]
                for m in doc.get("measured", [])}
    from rich import box

    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  title=f"{profile.display_name}: {doc['fitting']} of {doc['searched']} "
                        f"candidates fit {budget.latency_ms:g} ms / {budget.memory_mb:g} MB "
                        f"activations / {budget.size_mb:g} MB file "
                        f"({model.precision}, {model.runtime}, {model.threads} thread(s))",
                  caption=f"ms: predicted latency, {model.basis}. act MB: peak activations. "
                          "φ: on the compound-scaling line. top-1 proxy: published ImageNet "
                          "top-1 of the reference variants interpolated by MACs (and "
                          "resolution), not a measurement on your data; * extrapolated.")
    cols = ["model", "MACs", "params", f"ms±{model.expected_error_pct:.0f}%", "act MB", "MB",
            "top-1"]
    if measured:
        cols.insert(4, "measured")
    for col in cols:
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for c in rows:
        cells = [_name(c) + (" φ" if c.phi is not None else ""),
                 f"{c.macs / 1e6:.0f} M", fmt_count(c.params), f"{c.latency_ms:.2f}",
                 f"{c.memory_mb:.2f}", f"{c.size_mb:.2f}",
                 f"{c.proxy.top1:.1f}±{c.proxy.error:.1f}" + ("*" if c.proxy.extrapolated else "")]
        if measured:
            m = measured.get((c.family, c.width, c.depth, c.resolution))
            cells.insert(4, "-" if m is None else f"{m:.2f}")
        table.add_row(*cells)
    console.print(table)
