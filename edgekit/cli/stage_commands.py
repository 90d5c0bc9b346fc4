"""Commands generated from stages: ``edgekit quantize`` is the quantize stage's options model
turned into Typer parameters, plus the stage's input (MODEL or --from), -o, --save-recipe,
--force and --json. The command validates the options with the model, runs the stage's
function with a reporter that draws progress bars, and prints the result with the renderer
the command module gives."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from ..stages.reporter import Reporter
from ._common import FORCE_OPT, JSON_OPT, SAVE_RECIPE_OPT, console, emit_json

# stage -> "module:function" of edgekit.cli.render that prints its result for people
RENDERERS = {"build": "build:render", "scale": "scale:render", "prune": "train:render_prune",
             "finetune": "train:render_finetune", "quantize": "convert:render",
             "export": "convert:render", "profile": "profile:render", "inspect": "inspect:render",
             "predict": "predict:render", "compare": "compare:render", "report": "report:render",
             "calibrate": "calibrate:render"}
# the --json document's schema of a stage that returns an artifact (default edgekit.NAME/1)
SCHEMAS = {"build": "edgekit.zoo.build/1"}


def render(name: str, result: Any) -> None:
    """Print stage ``name``'s result as its command does."""
    import importlib

    module, _, function = RENDERERS[name].partition(":")
    getattr(importlib.import_module(f"{__package__}.render.{module}"), function)(result)


def stage_command(name: str) -> Callable:
    """The Typer command function of stage ``name``."""
    from ..stages import get

    stage = get(name)
    params = [*_source_params(stage), *_option_params(stage.options), *_io_params(stage)]

    def command(**kwargs: Any) -> None:
        run_command(stage, kwargs, SCHEMAS.get(name, f"edgekit.{name}/1"))

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = stage.run.__doc__.split("\n\n")[0]
    command.__name__ = name
    return command


def _source_params(stage) -> list[inspect.Parameter]:
    if stage.source == "model":
        return [_param("model", Path, typer.Argument(..., help=stage.source_help,
                                                     metavar="MODEL"))]
    if stage.source == "from":
        return [_param("from_model", Optional[Path],
                       typer.Option(None, "--from", help=stage.source_help, metavar="PATH"))]
    return []


def _option_params(model) -> list[inspect.Parameter]:
    from ..stages.base import flags_of, is_argument

    out = []
    for name, field in model.model_fields.items():
        required = field.is_required() or (field.json_schema_extra or {}).get("cli_required")
        default = ... if required else field.default
        help_ = field.description or ""
        info = (typer.Argument(default, help=help_, metavar=name.upper())
                if is_argument(field) else
                typer.Option(default, *flags_of(name, field), help=help_,
                             metavar=metavar(field.annotation)))
        out.append(_param(name, field.annotation, info))
    # typer wants arguments first, as Python wants parameters without defaults first
    return sorted(out, key=lambda p: not isinstance(p.default, typer.models.ArgumentInfo))


def metavar(annotation: Any) -> Optional[str]:
    """The placeholder of an option's value in --help: TEXT, PATH, INTEGER, NUMBER (none for a
    flag)."""
    import typing

    kinds = {str: "TEXT", Path: "PATH", int: "INTEGER", float: "NUMBER"}
    todo = [annotation]
    while todo:
        t = todo.pop(0)
        if t in kinds:
            return kinds[t]
        todo.extend(typing.get_args(t))
    return None


def _io_params(stage) -> list[inspect.Parameter]:
    if not stage.output:
        return [_param("json_out", bool, JSON_OPT)]
    output = (typer.Option(..., "-o", "--output", help=stage.output_help, metavar="PATH")
              if stage.output_required else
              typer.Option(None, "-o", "--output", help=stage.output_help, metavar="PATH"))
    saving = [_param("save_recipe", Optional[Path], typer.Option(
        None, "--save-recipe", metavar="PATH", help=SAVE_RECIPE_OPT.help))]
    return [_param("output", Path if stage.output_required else Optional[Path], output),
            *(saving if stage.recipe_output else []),
            *([_param("force", bool, FORCE_OPT)] if stage.overwrite else []),
            _param("json_out", bool, JSON_OPT)]


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=annotation)


def run_command(stage, kwargs: dict[str, Any], schema: str) -> None:
    """Validate, run, save the recipe, print: what every stage command does."""
    from ..core.errors import EdgekitError
    from ._common import recipe_saver

    json_out = kwargs.pop("json_out")
    force, output = kwargs.pop("force", False), kwargs.pop("output", None)
    source = kwargs.pop({"model": "model", "from": "from_model"}.get(stage.source, ""), None)
    save = recipe_saver(kwargs.pop("save_recipe", None), stage, kwargs, source, force)
    options = stage.validate(kwargs)
    try:
        with ConsoleReporter(quiet=json_out) as reporter:
            result = stage.run(source, options, output, force=force, reporter=reporter)
    except EdgekitError as exc:
        failed = getattr(exc, "result", None)  # what was found before the failure
        if failed is not None and json_out:
            emit_json(json_document(failed, schema))
        elif failed is not None and getattr(exc, "shown", False):
            render(stage.name, failed)
        raise
    save(options)
    if json_out:
        emit_json(json_document(result, schema))
    else:
        render(stage.name, result)


def json_document(result: Any, schema: str) -> dict:
    """The --json document of a stage's result: an artifact's sidecar with its path, or the
    result's own document."""
    if hasattr(result, "meta"):  # an Artifact
        return {**result.meta, "schema": schema, "path": str(result.path)}
    return result.to_json()


class ConsoleReporter(Reporter):
    """A stage's progress on stderr: one transient bar, and a line per finished epoch."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._bar = self._task = None

    def __enter__(self) -> "ConsoleReporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()

    def _started(self) -> Any:
        """The progress bar, started on the first report (a stage that reports nothing, such
        as compare, never imports rich.progress)."""
        if self._bar is None and not self.quiet:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn)

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console.rich(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("", total=None)
        return self._bar

    def progress(self, done: int, total: Optional[int], description: Optional[str] = None) -> None:
        if self._started() is not None:
            extra = {"description": description} if description else {}
            self._bar.update(self._task, completed=done, total=total, **extra)

    def status(self, message: str) -> None:
        if self._started() is not None:
            self._bar.update(self._task, description=message, total=None, completed=0)

    def epoch(self, row: dict) -> None:
        if not self.quiet:
            console.print(epoch_line(row))


def epoch_line(row: dict) -> str:
    """One finished epoch as a line."""
    kd = f"  kd {row['kd_loss']:.4f}" if "kd_loss" in row else ""
    return (f"epoch {row['epoch']:>3}  loss {row['loss']:.4f}  acc {row['accuracy']:.2f}%  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_accuracy']:.2f}%  "
            f"lr {row['lr']:.2g}  {row['seconds']:.0f}s{kd}  ({row['phase']})")
