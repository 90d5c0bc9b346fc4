"""The ``calibrate`` stage: measure a device and write its fitted latency coefficients."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.errors import BadInput
from .base import QUIET, Reporter, Stage, option, options_argv
from .profile import RUNNER_HELP, TIMEOUT_HELP, LabOptions, SSHOptions


class CalibrateOptions(SSHOptions, LabOptions):
    device: str = option("host", "Device to calibrate (host = this machine; a Linux device "
                         "with --host user@host).", "--device", "-d")
    precision: list[str] = option(["fp32", "int8"], "Precision to calibrate (repeatable).",
                                  "--precision", "-p")
    threads: int = option(1, "CPU threads the coefficients are fitted for.")
    suite: str = option("full", "full (50 models, about 6 minutes per precision on 2 cores), "
                        "quick (21) or tiny (4, a smoke test: too few for a good fit).")
    jobs: int = option(2, "Parallel conversions (timing always runs alone).")
    runner: Optional[str] = option(None, RUNNER_HELP)
    timeout: Optional[float] = option(None, TIMEOUT_HELP)


def calibrate(_: None, o: CalibrateOptions, output: Optional[Path] = None, *,
              force: bool = False, reporter: Reporter = QUIET):
    """Time micro-benchmark probes and representative networks on a device, fit the latency
    model's coefficients per precision, and write them (provenance: measured) into a
    user-level copy of the device profile, which then takes precedence over the packaged one.

    Returns a Result of the ``edgekit.calibrate/1`` document (``.fits``, ``.written``)."""
    from ..core.devices import load_device, user_dir
    from ..core.results import Result
    from ..estimate.calibrate import SUITES, calibrate as fit, suite_specs, today, write_profile
    from ..estimate.timing import measure_specs
    from ..estimate.work import PRECISIONS as COSTED

    if o.suite not in SUITES:
        raise BadInput(f"unknown suite '{o.suite}' (known: {', '.join(SUITES)})")
    if o.threads < 1 or o.jobs < 1:
        raise BadInput("--threads and --jobs must be at least 1")
    for p in o.precision:
        if p not in COSTED:
            raise BadInput(f"cannot calibrate precision '{p}' ({', '.join(COSTED[:-1])} or "
                           f"{COSTED[-1]})")
    profile = load_device(o.device)
    if "tflite-xnnpack" not in profile.runtimes:
        raise BadInput(f"device '{o.device}' offers no tflite-xnnpack runtime to calibrate")
    n = len(suite_specs(o.suite))

    def step(p: str, done: int, total: int) -> None:
        i = o.precision.index(p)
        reporter.progress(i * total + done, total * len(o.precision), f"calibrating {o.device}")

    if o.on_lab():
        from ..cluster.measure import LabTimer

        with LabTimer(profile.name, o.threads, address=o.address, lab=o.lab,
                      timeout_s=o.timeout) as lab:
            fits = fit(lab.measure, list(o.precision), o.threads, o.suite, progress=step)
        where = "Ray lab devices " + ", ".join(sorted({d for f in fits for r in f.rows
                                                      for d in r["measured_on"]}))
    else:
        runner = _runner(o, profile)
        with runner:
            fits = fit(lambda specs, precision, progress: measure_specs(
                specs, precision, runner, o.threads, progress, jobs=o.jobs),
                list(o.precision), o.threads, o.suite, progress=step)
        where = f"{runner.name} runner"
    command = "edgekit calibrate " + " ".join(options_argv(CalibrateOptions, o.non_default()))
    out = output or user_dir() / f"{profile.name}.yaml"
    cpu = fits[0].rows[0].get("cpu", "") if fits and fits[0].rows else ""
    write_profile(profile, fits, out, command=command.strip(), date=today(), cpu=cpu,
                  measured_by=where)
    return Result({
        "schema": "edgekit.calibrate/1", "device": profile.name, "written": str(out),
        "suite": o.suite, "measurements_per_precision": n, "threads": o.threads,
        "fits": [{"precision": f.precision, "measurements": f.n,
                  "expected_error_pct": round(f.expected_error_pct, 1),
                  "loo_within_10pct": round(sum(abs(e) <= 10 for e in f.loo_errors_pct)
                                            / max(1, len(f.loo_errors_pct)), 3),
                  "coefficients": f.coefficients,
                  "measured": [{"model": r["label"], "median_ms": round(r["median_ms"], 4),
                                "fit_error_pct": round(r["fit_error_pct"], 1),
                                **({"measured_on": r["measured_on"]} if "measured_on" in r
                                   else {})}
                               for r in f.rows]} for f in fits]})


def _runner(o: CalibrateOptions, profile):
    """The runner that times the device: local for this machine, ssh for another."""
    from ..runtime.selection import make_runner, runner_kind

    name = runner_kind(o, profile)
    if name == "emulator":
        raise BadInput("the emulator's timings are not a device's (qemu is 90-330x slower): "
                       "nothing to calibrate")
    if name == "adb":
        raise BadInput(f"calibrating '{o.device}' needs a runner that times each model in "
                       "rounds through the harness (local or ssh); the adb runner's "
                       "benchmark_model is not used for calibration yet")
    runner = make_runner(o, profile)
    if runner.name == "local" and profile.kind != "host":
        raise BadInput(f"'{o.device}' is not this machine: reach it with --host user@host "
                       "(ssh) to calibrate it")
    return runner


CALIBRATE = Stage("calibrate", CalibrateOptions, calibrate, makes_model=False,
                  measures_on_device=True, source="none",
                  recipe_output=False, overwrite=False, default_suffix=".yaml",
                  output_help="Write the profile here instead of the user override folder.")
