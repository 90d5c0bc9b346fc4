"""The ``edgekit`` command. Each command group lives in its own module; this one wires them
and is the single place where an EdgekitError becomes a message and an exit code."""

from __future__ import annotations

import os
import sys

import typer

from ..errors import EdgekitError, ExitCode
from . import (calibrate_cmd, compare_cmd, devices_cmd, doctor, emulator_cmd, inspect_cmd,
               optimize_cmd, predict_cmd, profile_cmd, report_cmd, run_cmd, scale_cmd, train_cmd, zoo)
from ._common import console, setup_logging

app = typer.Typer(
    name="edgekit",
    help="Fit MobileNet/EfficientNet classifiers to edge devices: scale them to a device's "
         "budget, build, quantize, export, inspect and profile them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # never print locals (paths, hosts, keys) in tracebacks
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("doctor")(doctor.doctor)
app.add_typer(zoo.app, name="zoo")
app.add_typer(devices_cmd.app, name="devices")
app.command("inspect")(inspect_cmd.inspect)
app.command("prune")(train_cmd.prune)
app.command("finetune")(train_cmd.finetune)
app.command("quantize")(optimize_cmd.quantize)
app.command("export")(optimize_cmd.export)
app.command("profile")(profile_cmd.profile)
app.command("predict")(predict_cmd.predict)
app.command("scale")(scale_cmd.scale)
app.command("calibrate")(calibrate_cmd.calibrate)
app.command("compare")(compare_cmd.compare)
app.add_typer(emulator_cmd.app, name="emulator")
app.command("run")(run_cmd.run)
app.command("report")(report_cmd.report)


def main() -> None:
    from ..models.load import quiet_tensorflow

    quiet_tensorflow()  # before any command imports TensorFlow: keep its C++ chatter off stderr
    setup_logging()
    try:
        code = app(standalone_mode=False)
        # typer turns Ctrl-C into Exit(130), which standalone_mode=False *returns*
        if code == 130:
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except EdgekitError as exc:
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        _error(str(exc))
        sys.exit(int(exc.code))
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        # Usage errors from typer's bundled click: duck-typed, since typer vendors click
        # privately. Shown as one line, exit 2, like every other bad input.
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            if exc.format_message():  # empty when a bare group just printed its help
                _error(f"{exc.format_message()} (see --help)")
            sys.exit(ExitCode.BAD_INPUT)
        raise


def _error(message: str) -> None:
    from rich.text import Text

    console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
