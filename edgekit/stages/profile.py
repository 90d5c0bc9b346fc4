"""The ``profile`` stage: latency, memory, accuracy and fidelity, measured on a runner."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.errors import BadInput
from .base import QUIET, Options, Reporter, Stage, option
from .common import INPUT_SIZE_HELP, PREP_HELP


class SSHOptions(Options):
    """How a Linux device is reached over SSH (profile, scale --measure, calibrate)."""

    host: Optional[str] = option(None, "user@host of a Linux device reachable by key-based SSH "
                                 "(uses your ~/.ssh/config); implies --runner ssh.")
    port: Optional[int] = option(None, "SSH port of --host (default: from ssh config, 22).")
    identity: Optional[Path] = option(None, "SSH private key for --host.")
    ssh_option: list[str] = option([], "Extra ssh -o Key=Value (repeatable).")
    remote_python: str = option("python3", "Python on the device (needs numpy and "
                                "ai-edge-litert, tflite-runtime or onnxruntime).")


class LabOptions(Options):
    """Where timings spread over a device lab on Ray (scale --measure, calibrate)."""

    address: Optional[str] = option(None, "Ray cluster to time on (HEAD:PORT; see `edgekit lab "
                                    "start`): every node offering the device takes a share.")
    lab: Optional[Path] = option(None, "Lab file (edgekit.lab/1): time on its devices of "
                                 "--device, through a Ray started here.")

    def on_lab(self) -> bool:
        """Whether the timings go to a lab (refused with --host, --serial or --runner: the lab
        says how each of its devices is reached)."""
        if self.address is None and self.lab is None:
            return False
        given = [f for f in ("host", "serial", "runner") if getattr(self, f, None)]
        if given:
            raise BadInput(f"--{given[0]} and --address/--lab exclude each other: the lab "
                           "says how each device is reached")
        return True


RUNNER_HELP = ("Where to run: local (this machine) or ssh (a Linux device; implied by --host). "
               "Default: local.")
TIMEOUT_HELP = ("Seconds one model run may take on the device before edgekit stops it there "
                "and exits 3 (default: 3600; adb 1800, emulator 10800).")


class ProfileOptions(SSHOptions):
    data: Optional[str] = option(None, "Labelled data for accuracy: folder, .npz, IDX file or "
                                 "fashion-mnist[-sample]:test.")
    reference: Optional[Path] = option(None, "Float model to compare outputs with (fidelity).")
    device: Optional[str] = option(None, "Catalog device the runner reaches (recorded in the "
                                   "result).", "--device", "-d")
    runner: Optional[str] = option(None, RUNNER_HELP)
    timeout: Optional[float] = option(None, TIMEOUT_HELP)
    serial: Optional[str] = option(None, "adb serial of an Android device (implies --runner "
                                   "adb; default: the only device adb sees).")
    benchmark_binary: Optional[Path] = option(None, "TFLite benchmark_model for the phone "
                                              "(android_aarch64) to push; default: "
                                              "/data/local/tmp/benchmark_model or one on the "
                                              "PATH.")
    accelerator: str = option("cpu", "cpu, or gpu for the GPU delegate (adb runner).")
    engine: str = option("harness", "What times the model: harness (the device's interpreter) "
                         "or tensorrt (trtexec on a Jetson, .onnx, --host).")
    trtexec: Optional[str] = option(None, "Path of trtexec on the device (default: PATH, then "
                                    "/usr/src/tensorrt/bin/trtexec).")
    trt_precision: Optional[str] = option(None, "With --engine tensorrt: build the engine in "
                                          "fp32, fp16 or int8 (default: the model's precision; "
                                          "fp16 is TensorRT's usual Jetson choice).")
    provider: str = option("cpu", "onnxruntime execution provider for .onnx models: cpu, cuda "
                           "or tensorrt (needs onnxruntime-gpu where it runs).")
    threads: Optional[int] = option(None, "CPU threads (default: all cores).")
    runs: int = option(100, "Timed runs (batch 1).")
    warmup: int = option(10, "Untimed warm-up runs.")
    limit: Optional[int] = option(None, "Evaluate a class-balanced subset of N images.")
    preprocessing: Optional[str] = option(None, PREP_HELP)
    reference_preprocessing: Optional[str] = option(
        None, "The reference's input preprocessing (same names as --preprocessing). Default: "
        "its sidecar, else its graph, else the profiled model's when it was made from the "
        "reference.")
    input_size: Optional[str] = option(None, INPUT_SIZE_HELP)


def profile(model: Path, o: ProfileOptions, output: Optional[Path], *, force: bool = False,
            reporter: Reporter = QUIET):
    """Measure latency, memory, accuracy and fidelity of a model on a runner.

    Returns a ProfileResult (``.latency.p50_ms``, ``.accuracy.top1``,
    ``.fidelity.top1_agreement``, ``.to_json()``); with ``output``, also written there."""
    from ..core.artifacts import check_output, open_artifact, write_json_atomic
    from ..core.devices import load_device
    from ..core.results import ProfileResult
    from ..runtime.profiling import profile as measure
    from ..runtime.selection import make_runner
    from ..core.shapes import parse_input_size

    device = load_device(o.device) if o.device else None  # unknown: lists the known (exit 2)
    if o.accelerator not in ("cpu", "gpu"):
        raise BadInput(f"--accelerator must be cpu or gpu (got {o.accelerator})")
    runner = make_runner(o, device)
    if output:
        check_output(output, force)
    art = open_artifact(model)
    ref = open_artifact(o.reference) if o.reference else None
    reporter.status("profiling")
    doc = measure(art, runner, data=o.data, reference=ref, threads=o.threads,
                  warmup=o.warmup, runs=o.runs, limit=o.limit, preprocessing=o.preprocessing,
                  reference_preprocessing=o.reference_preprocessing,
                  input_size=parse_input_size(o.input_size), status=reporter.status,
                  device=device.name if device else None)
    if output:
        write_json_atomic(output, doc, force=force)
    return ProfileResult(doc, output)


PROFILE = Stage("profile", ProfileOptions, profile, makes_model=False, needs_device=True,
                measures_on_device=True,
                default_suffix=".json", source_help="Model to measure: .tflite, .onnx or .keras.",
                output_help="Write the result JSON here.")
