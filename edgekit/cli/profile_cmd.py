"""``edgekit profile MODEL``: latency, memory, accuracy and fidelity, measured."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import (BENCHMARK_BINARY_OPT, FORCE_OPT, HOST_OPT, IDENTITY_OPT, INPUT_SIZE_OPT,
                      JSON_OPT, PORT_OPT, PREP_OPT, REMOTE_PYTHON_OPT, RUNNER_OPT, SAVE_RECIPE_OPT,
                      SERIAL_OPT, SSH_OPTION_OPT, TIMEOUT_OPT, console, emit_json, fmt_bytes,
                      make_runner, recipe_saver)


def profile(
    model: Path = typer.Argument(..., help="Model to measure: .tflite, .onnx or .keras."),
    data: Optional[str] = typer.Option(None, "--data", help="Labelled data for accuracy: folder, "
                                       ".npz, IDX file or fashion-mnist[-sample]:test."),
    reference: Optional[Path] = typer.Option(None, "--reference",
                                             help="Float model to compare outputs with (fidelity)."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Catalog device the "
                                         "runner reaches (recorded in the result)."),
    runner: Optional[str] = RUNNER_OPT,
    host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT,
    identity: Optional[Path] = IDENTITY_OPT,
    ssh_option: list[str] = SSH_OPTION_OPT,
    remote_python: str = REMOTE_PYTHON_OPT,
    timeout: Optional[float] = TIMEOUT_OPT,
    serial: Optional[str] = SERIAL_OPT,
    benchmark_binary: Optional[Path] = BENCHMARK_BINARY_OPT,
    accelerator: str = typer.Option("cpu", help="cpu, or gpu for the GPU delegate (adb "
                                    "runner)."),
    engine: str = typer.Option("harness", help="What times the model: harness (the device's "
                               "interpreter) or tensorrt (trtexec on a Jetson, .onnx, --host)."),
    trtexec: Optional[str] = typer.Option(None, help="Path of trtexec on the device (default: "
                                          "PATH, then /usr/src/tensorrt/bin/trtexec)."),
    trt_precision: Optional[str] = typer.Option(
        None, "--trt-precision", help="With --engine tensorrt: build the engine in fp32, fp16 "
        "or int8 (default: the model's precision; fp16 is TensorRT's usual Jetson choice)."),
    provider: str = typer.Option("cpu", "--provider",
                                 help="onnxruntime execution provider for .onnx models: cpu, "
                                      "cuda or tensorrt (needs onnxruntime-gpu where it runs)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    runs: int = typer.Option(100, "--runs", help="Timed runs (batch 1)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed warm-up runs."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate a class-balanced subset of N images."),
    preprocessing: Optional[str] = PREP_OPT,
    reference_preprocessing: Optional[str] = typer.Option(
        None, "--reference-preprocessing", help="The reference's input preprocessing (same "
        "names as --preprocessing). Default: its sidecar, else its graph, else the profiled "
        "model's when it was made from the reference."),
    input_size: Optional[str] = INPUT_SIZE_OPT,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the result JSON here."),
    save_recipe: Optional[Path] = SAVE_RECIPE_OPT,
    force: bool = FORCE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Measure latency, memory, accuracy and fidelity of a model on a runner."""
    args = dict(locals())  # the parameters, for --save-recipe
    save = recipe_saver(save_recipe, "profile", args, force)
    import json

    from ..artifacts import check_output, open_artifact, write_text_atomic
    from ..devices import load_device
    from ..runtime.profile import profile as run_profile
    from ..shapes import parse_input_size

    profile_ = load_device(device) if device else None  # unknown: lists the known (exit 2)
    if accelerator not in ("cpu", "gpu"):
        from ..errors import BadInput
        raise BadInput(f"--accelerator must be cpu or gpu (got {accelerator})")
    the_runner = make_runner(runner, host, port, identity, ssh_option, remote_python, profile_,
                             serial, benchmark_binary, accelerator, engine, trtexec, provider,
                             trt_precision, timeout)
    if output:
        check_output(output, force)
    art = open_artifact(model)
    ref = open_artifact(reference) if reference else None
    with console.status("profiling") as st:
        result = run_profile(art, the_runner, data=data, reference=ref, threads=threads,
                             warmup=warmup, runs=runs, limit=limit, preprocessing=preprocessing,
                             reference_preprocessing=reference_preprocessing,
                             input_size=parse_input_size(input_size),
                             status=st.update,
                             device=profile_.name if profile_ else None)
    if output:
        write_text_atomic(output, json.dumps(result, indent=2) + "\n", force=force)
    save()
    if json_out:
        emit_json(result)
    else:
        _print(result, output)


def _print(r: dict, output: Optional[Path]) -> None:
    from rich.table import Table

    from ..preprocessing import describe

    lat, s = r["latency_ms"], r["settings"]
    table = Table(show_header=False, title=f"{r['model']['path']} ({r['model']['precision'] or '?'}, "
                  f"{fmt_bytes(r['model']['size_bytes'])})", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("measured on", f"{r['provenance']['measured']}, {s['threads']} threads, "
                  f"{r['provenance']['runtime']} {r['provenance']['runtime_version']}")
    if lat.get("meaningful") is False:
        table.add_row("latency", f"not meaningful: {lat.get('note', '')}")
    shown = "  ".join(f"{k} {lat[k]:.3f}" for k in ("p50", "mean", "std", "min", "p5", "p90",
                                                     "p95", "p99", "max") if k in lat)
    table.add_row("latency (ms)", f"{shown}  (n={lat['count']}, warm-up {s['warmup']})")
    table.add_row("preprocessing", describe(r["model"].get("preprocessing")))
    table.add_row("init (ms)", f"{r['init_ms']:.1f}")
    mem = r["memory"]
    own = (f"model peak +{mem['model_peak_mb']:.1f} MB over {mem['baseline_rss_mb']:.1f} MB of "
           f"Python and runtime, " if mem.get("model_peak_mb") is not None else "")
    table.add_row("memory", f"{own}model load +{mem['model_rss_mb']:.1f} MB, process peak RSS "
                  f"{mem['peak_rss_mb']:.1f} MB")
    if r.get("outputs") and not r["outputs"]["class_scores"]:
        table.add_row("outputs", f"{r['outputs']['why']}: no accuracy or top-1 agreement")
    if r.get("accuracy"):
        a = r["accuracy"]
        table.add_row("accuracy", f"top-1 {a['top1']:.2f}%  top-5 {a['top5']:.2f}%  "
                      f"(n={a['n']}, {a['dataset']})")
        if a.get("degenerate"):
            table.add_row("", f"[yellow]{'; '.join(a['degenerate'])}[/]")
    if r.get("fidelity"):
        f = r["fidelity"]
        snr = "identical" if f["identical"] else f"{f['snr_db']:.1f} dB"
        agree = ("" if f.get("top1_agreement") is None
                 else f"top-1 agreement {f['top1_agreement']:.2f}%, ")
        table.add_row("fidelity", f"{agree}SNR {snr}, max |diff| {f['max_abs_diff']:.3g} "
                      f"vs {f['reference']}")
        for who, reasons in (f.get("degenerate") or {}).items():
            table.add_row("", f"[red]NOT MEANINGFUL: the {who}'s {'; '.join(reasons)}[/]")
        table.add_row("reference input", describe(f.get("reference_preprocessing")))
    if r.get("reference_accuracy"):
        table.add_row("reference acc.", f"top-1 {r['reference_accuracy']['top1']:.2f}%")
    console.print(table)
    if output:
        console.print(f"wrote {output}")
