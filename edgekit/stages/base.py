"""What a stage is: one options model, one function, and its facts.

A stage's options model (pydantic) holds every option's name, type, default, help text,
command-line flags and validation. The ``edgekit STAGE`` command is generated from it
(``edgekit.cli.stages``), a recipe's stage is validated by it, ``--save-recipe`` writes it and
``edgekit run`` hands it to the stage's function. The stage's facts (whether it makes a model,
whether it takes a device, its output's suffix) are attributes of its ``Stage``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.errors import BadInput
from .reporter import QUIET, Reporter


def option(default: Any = ..., help: str = "", *flags: str, cli_required: bool = False,
           argument: bool = False, **constraints: Any) -> Any:
    """One stage option: its default (``...``: required), help text and command-line flags
    (default ``--NAME``; a bool that defaults to true needs ``--x/--no-x``).
    ``cli_required``: the command line requires it though a recipe may leave it out (the
    recipe fills it in, e.g. its device). ``argument``: given on the command line by its
    place, after the command (``edgekit zoo build FAMILY``)."""
    extra: dict[str, Any] = {}
    if flags:
        extra["flags"] = list(flags)
    if cli_required:
        extra["cli_required"] = True
    if argument:
        extra["argument"] = True
    return Field(default, description=help, json_schema_extra=extra or None, **constraints)


def is_argument(field) -> bool:
    """Whether an option is given by its place on the command line."""
    return bool((field.json_schema_extra or {}).get("argument"))


def flags_of(name: str, field) -> list[str]:
    """The command-line flags of one option field, e.g. ``["--mode", "-m"]``."""
    extra = field.json_schema_extra or {}
    return list(extra.get("flags") or [f"--{name.replace('_', '-')}"])


class Options(BaseModel):
    """Base of every stage's options: unknown names are refused, floats must be finite."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _finite(cls, value: Any, info) -> Any:
        # "nan" and "inf" parse as floats and pass every "> 0" check (a budget of nan ms
        # fits every model), so they are refused here, for the CLI, recipes and Python alike
        if isinstance(value, float) and not math.isfinite(value):
            flag = flags_of(info.field_name, cls.model_fields[info.field_name])[0]
            raise BadInput(f"{flag} {value} is not a finite number")
        return value

    def non_default(self) -> dict[str, Any]:
        """The options that differ from their defaults (what a recipe needs to say)."""
        return {name: getattr(self, name) for name, field in type(self).model_fields.items()
                if getattr(self, name) != field.default}


Source = Literal["model", "from", "none"]


@dataclass(frozen=True)
class Stage:
    """One stage: its options model, its function and its facts, stated once.

    ``run(source, options, output, force=, reporter=)`` does the work: ``source`` is the
    model it starts from (a path, or None for a stage that starts from nothing), ``output``
    where it writes. It raises only EdgekitError for problems the user can fix."""

    name: str
    options: type[Options]
    run: Callable[..., Any]
    makes_model: bool = True  # its output is a model, the next stage's input
    needs_device: bool = False  # takes the recipe's device when it names none
    source: Source = "model"  # model: the MODEL argument; from: --from MODEL; none
    source_help: str = ""
    output_help: str = "Output file."
    output_required: bool = False
    output: bool = True  # it writes a file (-o); inspect, predict and compare only print
    recipe_output: bool = True  # --save-recipe applies (report and calibrate: no)
    overwrite: bool = True  # --force applies (calibrate always rewrites its profile)
    default_suffix: str = ".keras"
    onnx_in_onnx_out: bool = False  # without --format, an .onnx source gives an .onnx file
    # it measures on its device, which it must have to itself while it runs (a sweep gives
    # it the device's Ray resource): True, or the name of the option that makes it measure
    measures_on_device: bool | str = False

    def measures(self, values: dict[str, Any]) -> bool:
        """Whether the stage, given option ``values`` (names -> values), measures on its device."""
        flag = self.measures_on_device
        return bool(values.get(flag)) if isinstance(flag, str) else flag

    @property
    def help(self) -> str:
        """The command's help: the docstring of the stage's function."""
        return " ".join((self.run.__doc__ or "").split("\n\n")[0].split())

    def suffix(self, options: Options, source_suffix: str = "") -> str:
        """The suffix of the file the stage writes with ``options`` from a source with
        ``source_suffix``."""
        fmt = getattr(options, "fmt", None)
        if fmt:
            return f".{fmt}"
        return ".onnx" if self.onnx_in_onnx_out and source_suffix == ".onnx" else \
            self.default_suffix

    def validate(self, values: dict[str, Any]) -> Options:
        """``values`` as this stage's options; a mistake is one BadInput naming the option."""
        try:
            return self.options.model_validate(values)
        except ValidationError as exc:
            raise BadInput(options_error(self.options, exc)) from None

    def __call__(self, source: Any = None, *, out: Optional[str | Path] = None,
                 force: bool = False, reporter: Reporter = QUIET, **options: Any) -> Any:
        """Run the stage from Python: ``options`` by their names (``mode="int8"``); a model
        may be given as a path or as the result of an earlier stage."""
        plain = {k: _path(v) if _is_result(v) else v for k, v in options.items()}
        return self.run(_path(source), self.validate(plain), _path(out), force=force,
                        reporter=reporter)


def _is_result(value: Any) -> bool:
    return not isinstance(value, (str, Path)) and getattr(value, "path", None) is not None


def _path(value: Any) -> Any:
    """A model given as an Artifact (a stage's result) or a path, as a path."""
    if value is None or isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value)
    path = getattr(value, "path", None)
    if path is None:
        raise BadInput(f"expected a model path or an artifact, not {type(value).__name__}")
    return Path(path)


def options_error(model: type[BaseModel], exc: ValidationError) -> str:
    """A pydantic error as one line naming the option by its flag and by its name."""
    err = exc.errors()[0]
    name = str(err["loc"][0]) if err["loc"] else ""
    field = model.model_fields.get(name)
    where = f"{flags_of(name, field)[0]} ({name})" if field else name or "options"
    if err["type"] == "extra_forbidden":
        known = ", ".join(model.model_fields)
        return f"unknown option {name!r} (known: {known})"
    return f"{where}: {err['msg'].removeprefix('Value error, ')}"


def options_argv(model, values: dict[str, Any]) -> list[str]:
    """Command-line words for option ``values`` (name -> value) of a stage's options model:
    arguments by their place, then each option by its flag."""
    fields = model.model_fields
    out = [str(values[n]) for n, f in fields.items() if is_argument(f) and n in values]
    for name, value in values.items():
        field = fields[name]
        if value is None or is_argument(field):
            continue
        flag, _, negative = flags_of(name, field)[0].partition("/")
        if isinstance(value, bool) and field.annotation in (bool, Optional[bool]):
            if value:
                out.append(flag)
            elif negative:
                out.append(negative)
        elif isinstance(value, list):
            for v in value:
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return out
