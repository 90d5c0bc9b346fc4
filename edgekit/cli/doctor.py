"""``edgekit doctor``: which runtimes and tools this machine has, without importing them
(except onnxruntime, asked for its execution providers)."""

from __future__ import annotations

import os
import platform

import typer

from ._common import JSON_OPT, console, emit_json

PACKAGES = {  # distribution name -> what edgekit uses it for
    "tensorflow": "Keras models, TFLite conversion", "tensorflow-cpu": "(CPU build of tensorflow)",
    "keras": "zoo models, training", "ai-edge-litert": "TFLite runtime (profiling)",
    "tflite-runtime": "TFLite runtime (device side)", "onnx": "ONNX files",
    "onnxruntime": "ONNX runtime (profiling)", "onnxruntime-gpu": "ONNX runtime on CUDA",
    "tf2onnx": "Keras -> ONNX", "onnxslim": "ONNX simplification", "nncf": "ONNX quantization",
    "numpy": "arrays", "pillow": "image datasets", "torch": "importing PyTorch checkpoints",
}
REQUIRED = ("keras", "ai-edge-litert", "numpy")


def _version(dist: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cpu() -> dict:
    from ..runtime.harness import cpu_flags, cpu_name  # what the profile results record

    name, flags = cpu_name(), cpu_flags()
    interesting = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "fma", "f16c", "asimddp",
                   "i8mm", "fphp", "asimdhp", "sve")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": name, "machine": platform.machine(), "cores": os.cpu_count(),
            "usable_cores": usable, "features": [f for f in interesting if f in flags]}


def _providers() -> list[str] | None:
    if not _version("onnxruntime") and not _version("onnxruntime-gpu"):
        return None
    try:
        import onnxruntime
        return list(onnxruntime.get_available_providers())
    except Exception:
        return None


def doctor(json_out: bool = JSON_OPT) -> None:
    """Show the runtimes, converters and execution providers this machine has."""
    from ..core.registry import EXPORTERS, QUANTIZERS, RUNNERS

    from ..core.data import fashion_mnist_dir

    packages = {d: _version(d) for d in PACKAGES}
    doc = {
        "schema": "edgekit.doctor/1",
        "python": platform.python_version(), "system": platform.platform(), "cpu": _cpu(),
        "packages": packages,
        "onnxruntime_providers": _providers(),
        "fashion_mnist": str(fashion_mnist_dir()) if fashion_mnist_dir() else None,
        "registered": {
            "quantizers": {k: e.caps for k, e in QUANTIZERS.items()},
            "exporters": {k: e.caps for k, e in EXPORTERS.items()},
            "runners": {k: e.caps for k, e in RUNNERS.items()},
        },
        "missing_required": [d for d in REQUIRED if not packages[d]],
    }
    if not (packages["tensorflow"] or packages["tensorflow-cpu"]):
        doc["missing_required"].append("tensorflow")
    if json_out:
        emit_json(doc)
    else:
        _print(doc)
    if doc["missing_required"]:
        raise typer.Exit(3)


def _print(doc: dict) -> None:
    from rich.table import Table

    cpu = doc["cpu"]
    console.print(f"Python {doc['python']} on {doc['system']}")
    console.print(f"CPU: {cpu['model']} ({cpu['machine']}), {cpu['cores']} cores "
                  f"({cpu['usable_cores']} usable); features: {', '.join(cpu['features']) or '-'}")
    table = Table(title="Packages", title_justify="left")
    table.add_column("package")
    table.add_column("version")
    table.add_column("used for")
    for dist, version in doc["packages"].items():
        table.add_row(dist, version or "[dim]not installed[/]", PACKAGES[dist])
    console.print(table)
    providers = doc["onnxruntime_providers"]
    console.print(f"onnxruntime providers: {', '.join(providers) if providers else '-'}")
    console.print(f"Fashion-MNIST (Debian dataset-fashion-mnist): {doc['fashion_mnist'] or 'not installed'}")
    reg = doc["registered"]
    console.print(f"quantizers: {', '.join(reg['quantizers'])}; exporters: "
                  f"{', '.join(reg['exporters'])}; runners: {', '.join(reg['runners'])}")
    if doc["missing_required"]:
        console.print(f"[bold red]missing required:[/] {', '.join(doc['missing_required'])}")
