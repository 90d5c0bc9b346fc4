"""What every command shares: the stderr console, --json output, progress bars, options.

Only typer is imported here, and rich when something is printed: ``edgekit --help`` must not
pay for either console. Commands import heavy code inside their bodies."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import typer


class _Console:
    """The stderr rich Console, made on first use (importing rich costs ~40 ms)."""

    _made = None

    def rich(self) -> Any:
        """The rich Console itself (for rich objects that take one)."""
        if _Console._made is None:
            import os
            import sys

            from rich.console import Console

            # piped or captured, a line is never wrapped at 80 columns (a value and its unit
            # on two lines); tables get 160 columns to lay out in, unless COLUMNS says
            wide = None if sys.stderr.isatty() or "COLUMNS" in os.environ else 160
            _Console._made = Console(stderr=True, soft_wrap=True, width=wide)
        return _Console._made

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rich(), name)


console: Any = _Console()

JSON_OPT = typer.Option(False, "--json", help="Print one JSON document on stdout, nothing else.")
FORCE_OPT = typer.Option(False, "--force", help="Overwrite the output if it exists.")
# the run folder and stage cache options of `edgekit run` and `edgekit sweep` (one cache)
RUNS_DIR_OPT = typer.Option(Path("runs"), "--runs-dir", help="Where run folders go "
                            "(RUNS/NAME-TIMESTAMP, RUNS/latest).")
CACHE_DIR_OPT = typer.Option(None, "--cache-dir", help="Stage cache (default: RUNS/.cache; "
                             "run and sweep share it).")
NO_CACHE_OPT = typer.Option(False, "--no-cache", help="Run every stage again (the results "
                            "still refresh the cache).")
SAVE_RECIPE_OPT = typer.Option(None, "--save-recipe", help="Also write a recipe (YAML) that "
                               "reproduces this command: `edgekit run RECIPE`.")


class _ConsoleHandler(logging.Handler):
    """edgekit's log records on the console: ``WARNING  message``."""

    def emit(self, record: logging.LogRecord) -> None:
        from rich.text import Text

        style = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}.get(record.levelname, "")
        console.print(Text.assemble((f"{record.levelname:<8} ", style), self.format(record)),
                      soft_wrap=True)


def setup_logging() -> None:
    handler = _ConsoleHandler()
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


@contextlib.contextmanager
def status(message: str, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr for work without a known length; yields ``update(message)``."""
    if quiet:
        yield lambda msg: None
        return
    with console.status(message) as st:
        yield lambda msg: st.update(msg)


def table(title: str, header: list[str], rows: list[list[str]], **options: Any) -> Any:
    """A rich Table whose cells may wrap between words but never inside one: each column is
    at least as wide as its longest word or number (a narrow terminal shows ``0.34 ms`` on two
    lines, never ``0… ms``)."""
    from rich.table import Table

    out = Table(title=title, title_justify="left", **options)
    for i, col in enumerate(header):
        longest = max((len(w) for r in [header, *rows] for w in str(r[i]).split()), default=1)
        out.add_column(col, min_width=longest, overflow="fold")
    for r in rows:
        out.add_row(*map(str, r))
    return out


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
