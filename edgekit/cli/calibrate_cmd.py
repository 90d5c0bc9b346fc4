"""``edgekit calibrate``: measure a device and write fitted latency coefficients."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from ._common import (HOST_OPT, IDENTITY_OPT, JSON_OPT, PORT_OPT, REMOTE_PYTHON_OPT, RUNNER_OPT,
                      SSH_OPTION_OPT, TIMEOUT_OPT, console, emit_json,
                      progress_bar)
from ._common import runner_name as runner_name_of


def calibrate(
    device: str = typer.Option("host", "--device", "-d", help="Device to calibrate (host = "
                               "this machine; a Linux device with --host user@host)."),
    precision: list[str] = typer.Option(["fp32", "int8"], "--precision", "-p",
                                        help="Precision to calibrate (repeatable)."),
    threads: int = typer.Option(1, help="CPU threads the coefficients are fitted for."),
    suite: str = typer.Option("full", help="full (50 models, about 6 minutes per precision on 2 "
                              "cores), quick (21) or "
                              "tiny (4, a smoke test: too few for a good fit)."),
    jobs: int = typer.Option(2, help="Parallel conversions (timing always runs alone)."),
    runner_name: Optional[str] = RUNNER_OPT,
    host: Optional[str] = HOST_OPT,
    port: Optional[int] = PORT_OPT,
    identity: Optional[Path] = IDENTITY_OPT,
    ssh_option: list[str] = SSH_OPTION_OPT,
    remote_python: str = REMOTE_PYTHON_OPT,
    timeout: Optional[float] = TIMEOUT_OPT,
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the profile here "
                                          "instead of the user override folder."),
    json_out: bool = JSON_OPT,
) -> None:
    """Time micro-benchmark probes and representative networks on a device, fit the latency
    model's coefficients per precision, and write them (provenance: measured) into a user-level
    copy of the device profile, which then takes precedence over the packaged one."""
    from ..estimate.calibrate import SUITES, calibrate as run_calibration, suite_specs, today, write_profile
    from ..core.devices import load_device, user_dir
    from ..core.errors import BadInput
    from ..estimate.work import PRECISIONS as COSTED
    from ..runtime.selection import make_runner, runner_options

    if suite not in SUITES:
        raise BadInput(f"unknown suite '{suite}' (known: {', '.join(SUITES)})")
    if threads < 1 or jobs < 1:
        raise BadInput("--threads and --jobs must be at least 1")
    for p in precision:
        if p not in COSTED:
            raise BadInput(f"cannot calibrate precision '{p}' ({', '.join(COSTED)})")
    profile = load_device(device)
    if "tflite-xnnpack" not in profile.runtimes:
        raise BadInput(f"device '{device}' offers no tflite-xnnpack runtime to calibrate")
    name = runner_name_of(runner_name, host, None, profile)
    if name == "emulator":
        raise BadInput("the emulator's timings are not a device's (qemu is 90-330x slower): "
                       "nothing to calibrate")
    if name == "adb":
        raise BadInput(f"calibrating '{device}' needs a runner that times each model in rounds "
                       "through the harness (local or ssh); the adb runner's benchmark_model "
                       "is not used for calibration yet")
    runner = make_runner(runner_options(runner=runner_name, host=host, port=port,
                                        identity=identity, ssh_option=ssh_option,
                                        remote_python=remote_python, timeout=timeout), profile)
    if runner.name == "local" and profile.kind != "host":
        raise BadInput(f"'{device}' is not this machine: reach it with --host user@host "
                       "(ssh) to calibrate it")
    n = len(suite_specs(suite))
    with progress_bar(f"calibrating {device}", json_out) as update:
        def step(p: str, done: int, total: int) -> None:
            i = precision.index(p)
            update(i * total + done, total * len(precision))
        with runner:
            fits = run_calibration(runner, list(precision), threads, suite, jobs=jobs,
                                   progress=step)
    command = "edgekit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = output or user_dir() / f"{profile.name}.yaml"
    cpu = fits[0].rows[0].get("cpu", "") if fits and fits[0].rows else ""
    write_profile(profile, fits, out, command=command, date=today(), cpu=cpu,
                  runner=runner.name)
    doc = {"schema": "edgekit.calibrate/1", "device": profile.name, "written": str(out),
           "suite": suite, "measurements_per_precision": n, "threads": threads,
           "fits": [{"precision": f.precision, "measurements": f.n,
                     "expected_error_pct": round(f.expected_error_pct, 1),
                     "loo_within_10pct": round(sum(abs(e) <= 10 for e in f.loo_errors_pct)
                                               / max(1, len(f.loo_errors_pct)), 3),
                     "coefficients": f.coefficients,
                     "measured": [{"model": r["label"], "median_ms": round(r["median_ms"], 4),
                                   "fit_error_pct": round(r["fit_error_pct"], 1)}
                                  for r in f.rows]} for f in fits]}
    if json_out:
        emit_json(doc)
        return
    from rich.table import Table

    table = Table(title=f"calibration of {profile.name} ({threads} thread(s), {suite} suite, "
                        f"{n} models per precision)",
                  caption="expected error: 90th percentile of leave-one-out errors (each model "
                          "predicted by a fit without it)")
    for col in ("precision", "measurements", "within ±10% (LOO)", "expected error",
                "largest coefficients (ms per unit)"):
        table.add_column(col)
    for f in doc["fits"]:
        big = sorted(f["coefficients"].items(), key=lambda kv: -kv[1])[:4]
        table.add_row(f["precision"], str(f["measurements"]), f"{f['loo_within_10pct']:.0%}",
                      f"±{f['expected_error_pct']:.0f}%",
                      ", ".join(f"{k} {v:.3g}" for k, v in big if v))
    console.print(table)
    console.print(f"wrote {out} (measured coefficients; `edgekit devices show {profile.name}`)")
