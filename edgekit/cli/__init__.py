"""The ``edgekit`` command. Each command group lives in its own module; this one wires them
and is the single place where an EdgekitError becomes a message and an exit code."""

from __future__ import annotations

import errno
import functools
import os
import sys

import typer

from ..core.errors import EdgekitError, ExitCode
from . import devices, doctor, emulator, lab, run, sweep, zoo
from ._common import console, setup_logging
from .lazy import SETTINGS, LazyGroup


class _Root(LazyGroup):
    STAGES = {name: name for name in ("scale", "prune", "finetune", "quantize", "export",
                                      "profile", "inspect", "predict", "compare", "report",
                                      "calibrate")}
    ORDER = ("doctor", "zoo", "devices", "inspect", "prune", "finetune", "quantize", "export",
             "profile", "predict", "scale", "calibrate", "compare", "emulator", "run", "sweep", "lab", "report")


app = typer.Typer(
    name="edgekit",
    help="Fit MobileNet/EfficientNet classifiers to edge devices: scale them to a device's "
         "budget, build, quantize, export, inspect and profile them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # never print locals (paths, hosts, keys) in tracebacks
    add_completion=False,
    rich_markup_mode=None,  # click's plain help: rewrapped to the terminal, nothing cut
    context_settings=SETTINGS,
    cls=_Root,
)
app.command("doctor")(doctor.doctor)
app.add_typer(zoo.app, name="zoo")
app.add_typer(devices.app, name="devices")
app.add_typer(emulator.app, name="emulator")
app.add_typer(lab.app, name="lab")
app.command("run")(run.run)
app.command("sweep")(sweep.sweep)


@functools.lru_cache(maxsize=None)
def command():
    """The click command that ``edgekit`` runs. Floats are checked finite by the stages'
    options models (click reads "nan" and "inf" as floats, which pass every ``> 0`` check)."""
    from typer.main import get_command

    return get_command(app)


_FILESYSTEM = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def main() -> None:
    from ..models.load import quiet_tensorflow

    quiet_tensorflow()  # before any command imports TensorFlow: keep its C++ chatter off stderr
    setup_logging()
    try:
        code = command().main(prog_name="edgekit", standalone_mode=False)
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
    except OSError as exc:
        # A full disk, a read-only folder, a quota: the machine's problem, not a bug. Writers
        # go through artifacts.atomic_path, so nothing half-written is left behind.
        if exc.errno not in _FILESYSTEM or os.environ.get("EDGEKIT_DEBUG"):
            raise
        _error(f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror}")
        sys.exit(ExitCode.ENVIRONMENT)
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
