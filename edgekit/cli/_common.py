"""What every command shares: the stderr console, --json output, progress bars, options.

Only typer and rich are imported here; commands import heavy code inside their bodies."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console(stderr=True)

JSON_OPT = typer.Option(False, "--json", help="Print one JSON document on stdout, nothing else.")
FORCE_OPT = typer.Option(False, "--force", help="Overwrite the output if it exists.")
UNSAFE_OPT = typer.Option(False, "--unsafe",
                          help="Load Keras models with safe_mode off (runs code in the file).")
SAVE_RECIPE_OPT = typer.Option(None, "--save-recipe", help="Also write a recipe (YAML) that "
                               "reproduces this command: `edgekit run RECIPE`.")
INPUT_SIZE_OPT = typer.Option(None, "--input-size",
                              help="Input height and width for a model whose input size is "
                                   "dynamic: H, HxW or a whole shape such as 1x3x320x320.")
PREP_OPT = typer.Option(None, "--preprocessing",
                        help="The model's input preprocessing: tf ([-1,1]), torch (ImageNet "
                             "mean/std), unit ([0,1]) or raw ([0,255]). Default: its sidecar, "
                             "else read from the graph; unknown stops the command.")


def setup_logging() -> None:
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    logger = logging.getLogger("edgekit")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def recipe_saver(path: Optional[Path], stage, raw: dict, source: Optional[Path],
                 force: bool) -> Callable[[Any], None]:
    """For --save-recipe: check now that ``path`` can be written; the function returned writes
    the recipe of ``stage`` run on ``source`` with the options it is given (call it once the
    command has succeeded)."""
    if path is None:
        return lambda options: None
    from ..core.artifacts import check_output
    from ..core.errors import BadInput

    if Path(path).suffix not in (".yaml", ".yml"):
        raise BadInput(f"{path}: --save-recipe writes a .yaml file")
    check_output(Path(path), force)

    def save(options) -> None:
        from ..recipes.schema import save_command_recipe

        save_command_recipe(Path(path), stage, options, source)
        console.print(f"wrote recipe {path} (run it with `edgekit run {path}`)")

    return save


def emit_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")


def default_output(model: Path, suffix: str, tag: str) -> Path:
    model = Path(model)
    return model.with_name(f"{model.stem}_{tag}{suffix}")


@contextlib.contextmanager
def progress_bar(description: str, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """A Rich progress bar on stderr; yields ``update(done, total, description=None)``
    (total None: no known length)."""
    if quiet:
        yield lambda done, total, description=None: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int | None, description: str | None = None) -> None:
            extra = {"description": description} if description else {}
            bar.update(task, completed=done, total=total, **extra)

        yield update


@contextlib.contextmanager
def status(message: str, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr for work without a known length; yields ``update(message)``."""
    if quiet:
        yield lambda msg: None
        return
    with console.status(message) as st:
        yield lambda msg: st.update(msg)


def fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000.0
    return str(n)


def fmt_count(n: Optional[int]) -> str:
    if n is None:
        return "-"
    if n >= 1e9:
        return f"{n / 1e9:.2f} G"
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} K"
    return str(n)


# --- where a model runs: --runner and the SSH options, shared by profile and calibrate -------
RUNNER_OPT = typer.Option(None, "--runner", help="Where to run: local (this machine) or ssh "
                          "(a Linux device; implied by --host). Default: local.")
HOST_OPT = typer.Option(None, "--host", help="user@host of a Linux device reachable by key-based "
                        "SSH (uses your ~/.ssh/config); implies --runner ssh.")
PORT_OPT = typer.Option(None, "--port", help="SSH port of --host (default: from ssh config, 22).")
IDENTITY_OPT = typer.Option(None, "--identity", help="SSH private key for --host.")
SSH_OPTION_OPT = typer.Option([], "--ssh-option", help="Extra ssh -o Key=Value (repeatable).")
SERIAL_OPT = typer.Option(None, "--serial", help="adb serial of an Android device (implies "
                          "--runner adb; default: the only device adb sees).")
BENCHMARK_BINARY_OPT = typer.Option(None, "--benchmark-binary", help="TFLite benchmark_model "
                                    "for the phone (android_aarch64) to push; default: "
                                    "/data/local/tmp/benchmark_model or one on the PATH.")
TIMEOUT_OPT = typer.Option(None, "--timeout", help="Seconds one model run may take on the "
                           "device before edgekit stops it there and exits 3 (default: 3600; "
                           "adb 1800, emulator 10800).")
REMOTE_PYTHON_OPT = typer.Option("python3", "--remote-python", help="Python on the device "
                                 "(needs numpy and ai-edge-litert, tflite-runtime or onnxruntime).")


def runner_name(runner: Optional[str], host: Optional[str], adb: object, device) -> str:
    """--runner, else ssh when --host is given, adb when --serial is, else the device's."""
    from ..runtime.selection import runner_kind, runner_options

    return runner_kind(runner_options(runner=runner, host=host, serial=adb), device)
