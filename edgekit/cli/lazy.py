"""Command groups whose stage commands are made only when they run or show their help.

A stage command is generated from its options model, which imports pydantic (~100 ms) and
the stage's module. ``edgekit --help`` lists the commands without making them; it reads each
stage's one-line summary from the docstring of the stage's function, found in the module's
source without importing it."""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 120}


_NB_HYPHEN = "\u2011"  # wrapped as part of a word, printed back as "-"
# typer's type labels (``<int>``, ``<list[Path]>``) as click's usual placeholders
_TYPES = {"int": "INTEGER", "float": "NUMBER", "str": "TEXT", "path": "PATH", "Path": "PATH",
          "bool": ""}


def _placeholders(name: str) -> str:
    """``--threads <int>`` -> ``--threads INTEGER``; ``MODEL <path>`` -> ``MODEL``; a flag
    shows no ``<bool>``."""
    import re

    def label(m: re.Match) -> str:
        inner = re.sub(r"^list\[(.*)\]$", r"\1", m[1])
        return "" if name[:1] not in "-" else (" " + _TYPES.get(inner, inner.upper())).rstrip()

    return re.sub(r" <([^>]*)>", label, name)


def _context_class():
    """click's Context with a help formatter that never breaks a line at a hyphen
    (``--max-\\ndrop``, ``fashion-\\nmnist``): hyphens are non-breaking while text is wrapped."""
    from typer._click.formatting import HelpFormatter

    class Formatter(HelpFormatter):
        def write_usage(self, prog: str, args: str = "", prefix: Optional[str] = None) -> None:
            import re

            args = re.sub(r"\{([^}]*)\}", r"\1", args)  # typer's {MODEL}: MODEL
            super().write_usage(prog, args.replace("-", _NB_HYPHEN), prefix)

        def write_text(self, text: str) -> None:
            super().write_text(text.replace("-", _NB_HYPHEN))

        def write_dl(self, rows, *args: Any, **kwargs: Any) -> None:
            super().write_dl([(_placeholders(a), b.replace("-", _NB_HYPHEN)) for a, b in rows],
                             *args, **kwargs)

        def getvalue(self) -> str:
            return super().getvalue().replace(_NB_HYPHEN, "-")

    class Context(typer.Context):
        formatter_class = Formatter

    return Context


CONTEXT = _context_class()


class LazyGroup(TyperGroup):
    """A Typer group with stage commands made on demand. Subclasses set ``STAGES`` (command
    name -> stage name) and ``ORDER`` (the order of the listing)."""

    STAGES: dict[str, str] = {}
    ORDER: tuple[str, ...] = ()
    context_class = CONTEXT

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(dict.fromkeys([*super().list_commands(ctx), *self.STAGES]))
        rank = {name: i for i, name in enumerate(self.ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def get_command(self, ctx: Any, name: str) -> Optional[Any]:
        if name not in self.commands and name in self.STAGES:
            self.commands[name] = stage_click_command(name, self.STAGES[name])
        command = super().get_command(ctx, name)
        if command is not None:
            command.context_class = CONTEXT
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            made = self.commands.get(name)
            text = made.help if made is not None else stage_docstring(self.STAGES[name])
            rows.append((name, summary(text or "")))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def summary(text: str) -> str:
    """A command's one-line description: the first sentence of its help."""
    first = " ".join(text.strip().split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".") + "."




def stage_click_command(name: str, stage: str) -> Any:
    """The click command of ``stage``, made from its options model."""
    from .stage_commands import stage_command

    one = typer.Typer(rich_markup_mode=None, context_settings=SETTINGS, add_completion=False)
    one.command(name)(stage_command(stage))
    return typer.main.get_command(one)


@functools.lru_cache(maxsize=None)
def stage_docstring(stage: str) -> str:
    """The docstring of a stage's function, read from its module's source: the registry names
    ``module:CONSTANT`` and the constant is ``Stage(name, Options, function, ...)``. Only the
    two statements are parsed (parsing the eleven whole modules took 30 of the 50 ms that
    ``edgekit --help`` spends after its imports)."""
    from ..core.registry import STAGES

    module, _, constant = STAGES.get_entry(stage).target.partition(":")
    path = Path(__file__).resolve().parents[2].joinpath(*module.split(".")).with_suffix(".py")
    source = path.read_text()
    made = ast.parse(_statement(source, rf"{constant}\s*=")).body[0].value
    function = made.args[2].id
    return ast.get_docstring(ast.parse(_statement(source, rf"def {function}\(")).body[0]) or ""


def _statement(source: str, opening: str) -> str:
    """The top-level statement of ``source`` that starts with the pattern ``opening``: its
    first line and every line after it up to the next line that starts a new statement at
    column 0 (a closing bracket at column 0 still belongs to it)."""
    import re

    first = re.search(rf"^{opening}", source, re.M)
    following = re.compile(r"^[^\s)\]}#]", re.M).search(source, first.end())
    return source[first.start():following.start() if following else len(source)]
