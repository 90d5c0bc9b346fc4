"""Recipes: a deployment written down once as YAML, validated with pydantic.

A recipe names its input (a model file, or a zoo build), the device, its budgets (handed to a
scale stage), named datasets, the ordered stages and the gates. Each stage takes its
stage's options model (``edgekit.stages``): ``{stage: quantize, mode: int8, calib: "@train"}``
takes exactly the options of ``edgekit quantize``, because the command is made from the same
model. A recipe and the command line therefore cannot drift apart, and ``--save-recipe`` writes
the same keys back.

Two keys of a stage belong to the runner: ``id`` (its name; default the command's) and
``input`` (``"@id"`` of an earlier stage's model; default the previous one). An option value
``"@name"`` names a dataset of ``datasets`` or an earlier stage's model (``"@build"`` is the
zoo build). ``edgekit.recipes.runner`` runs recipes.

Errors name the file and the line of the mistake (``recipe.yaml:12: stages.1.mode: ...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from ..core.errors import EdgekitError

SCHEMA = "edgekit.recipe/1"
# Keys of a stage that belong to the runner, not to the stage's options: the stage's name
# (for references such as ``teacher: "@teacher"``) and the model it starts from (default:
# the previous stage's output).
RUNNER_KEYS = ("id", "input")
# Options that name datasets: their relative paths are read from the recipe's folder.
DATA_OPTIONS = ("data", "calib", "val_data")
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# a recipe's ``zoo:`` is the build stage's options
from ..stages.build import BuildOptions as ZooSource  # noqa: E402


class Gates(_Strict):
    max_accuracy_drop: Optional[float] = Field(None, ge=0, description="points of top-1")
    max_latency_ms: Optional[float] = Field(None, gt=0)
    max_size_mb: Optional[float] = Field(None, gt=0)


class RecipeBudget(_Strict):
    """Handed to a scale stage as --latency-ms/--memory-mb/--size-mb unless it sets them."""
    latency_ms: Optional[float] = Field(None, gt=0)
    memory_mb: Optional[float] = Field(None, gt=0)
    size_mb: Optional[float] = Field(None, gt=0)


class Recipe(_Strict):
    schema_: Literal["edgekit.recipe/1"] = Field(SCHEMA, alias="schema")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    model: Optional[Path] = None  # an existing model file ...
    zoo: Optional[ZooSource] = None  # ... or a zoo build
    device: Optional[str] = None
    budget: RecipeBudget = RecipeBudget()
    datasets: dict[str, str] = Field(default_factory=dict)  # name -> spec, used as "@name"
    stages: list[dict[str, Any]] = Field(default_factory=list)
    gates: Gates = Gates()

    @model_validator(mode="after")
    def _one_source(self) -> "Recipe":
        starts_with_scale = bool(self.stages) and self.stages[0].get("stage") == "scale"
        if self.model is not None and self.zoo is not None:
            raise ValueError("give one of model (a file) or zoo (a family to build), not both")
        if self.model is None and self.zoo is None and not starts_with_scale:
            raise ValueError("give exactly one of model (a file) or zoo (a family to build); "
                             "only a recipe whose first stage is scale may have neither")
        if not self.stages and self.zoo is None:
            raise ValueError("stages: a recipe needs at least one stage (or a zoo build)")
        for name in self.datasets:
            if not _ID.fullmatch(name):
                raise ValueError(f"datasets: {name!r} is not a valid name (letters, digits, "
                                 "_ and -, starting with a letter)")
        return self


def recipe_stages() -> tuple[str, ...]:
    """The stages a recipe lists under ``stages:`` (a zoo build is its ``zoo:``)."""
    from ..core.registry import STAGES

    return tuple(name for name, entry in STAGES.items() if entry.caps.get("recipe"))


@dataclass
class Stage:
    """One validated stage of a recipe: its place, name, options and runner keys."""

    index: int  # 1-based
    id: str
    name: str  # the stage
    options: BaseModel
    input: Optional[str] = None  # "@id" of an earlier stage, else the previous output

    @property
    def makes_model(self) -> bool:
        return makes_model(self.name)


def makes_model(stage: str) -> bool:
    """Whether a stage's output is a model (the next stage's input); profile writes a result."""
    from ..stages import get

    return get(stage).makes_model


@lru_cache(maxsize=None)
def stage_model(stage: str) -> type[BaseModel]:
    """The options model of ``stage`` with its ``stage`` key, as a recipe writes it."""
    from ..stages import get

    base = get(stage).options
    return create_model(f"{stage.title()}Stage", __base__=base, stage=(Literal[stage], ...))


def validate_stages(stages: list[dict[str, Any]], path: Path, node,
                    datasets: Any = (), built: bool = False) -> list[Stage]:
    """Each stage validated by its command's schema, its id and its "@name" references
    (datasets and earlier stages); errors point at the stage's line."""
    from ..core.yamlfile import error_at, validation_error

    out: list[Stage] = []
    models: set[str] = {"build"} if built else set()  # ids of the models made so far
    for i, raw in enumerate(stages):
        if not isinstance(raw, dict):
            raise error_at(path, node, ("stages", i),
                           "a stage must be a mapping with a 'stage' key")
        name = raw.get("stage")
        if name not in recipe_stages():
            raise error_at(path, node, ("stages", i, "stage"),
                           f"unknown stage {name!r} (known: {', '.join(recipe_stages())})")
        # an option set to null takes its default, as it did when recipes ran the CLI
        clean = {k.replace("-", "_"): v for k, v in raw.items()
                 if k not in RUNNER_KEYS and v is not None}
        try:
            options = stage_model(name).model_validate(clean)
        except ValidationError as exc:
            raise validation_error(path, node, exc, prefix=("stages", i)) from None
        except EdgekitError as exc:  # a check of the options model: at the stage's line
            raise error_at(path, node, ("stages", i), exc.message) from None
        taken = {s.id for s in out} | set(datasets) | models
        sid = raw.get("id") or _free_id(name, taken)
        if not isinstance(sid, str) or not _ID.fullmatch(sid) or sid in taken:
            raise error_at(path, node, ("stages", i, "id"), f"id {sid!r} must be a new name "
                           "(letters, digits, _ and -, starting with a letter)")
        src = raw.get("input")
        if src is not None and (not isinstance(src, str) or src.removeprefix("@") not in models):
            raise error_at(path, node, ("stages", i, "input"),
                           f"input {src!r} must be '@ID' of an earlier stage that makes a model")
        for key, value in _option_values(options):
            ref = value[1:] if as_reference(value) else None
            if ref is not None and ref not in models and ref not in datasets:
                raise error_at(path, node, ("stages", i, key),
                               f"{value!r} names no dataset and no earlier stage making a model")
        stage = Stage(i + 1, sid, name, options, src.removeprefix("@") if src else None)
        if stage.makes_model:
            models.add(sid)
        out.append(stage)
    return out


def _free_id(name: str, taken: set[str]) -> str:
    n, sid = 1, name
    while sid in taken:
        n += 1
        sid = f"{name}-{n}"
    return sid


def _option_values(options: BaseModel):
    for key in type(options).model_fields:
        value = getattr(options, key)
        for v in value if isinstance(value, list) else [value]:
            yield key, as_reference(v) or v


def as_reference(value: Any) -> Optional[str]:
    """``value`` as "@name" when it is a reference (strings, and paths pydantic made of one)."""
    text = str(value) if isinstance(value, (str, Path)) else ""
    return text if text.startswith("@") else None


CATALOG = Path(__file__).resolve().parent.parent / "catalog" / "recipes"


SWEEP_SUFFIX = "-sweep.yaml"  # shipped sweep files (edgekit sweep) sit beside the recipes


def shipped(sweeps: bool = False) -> list[Path]:
    """The recipes (or, with ``sweeps``, the sweep files) that ship with edgekit."""
    return sorted(p for p in CATALOG.glob("*.yaml") if p.name.endswith(SWEEP_SUFFIX) == sweeps)


def recipe_path(name: str, sweeps: bool = False) -> Path:
    """A recipe file, or the name of a shipped one (``edgekit run mobilenet_v2-pixel7-int8``);
    with ``sweeps``, a sweep file or the name of a shipped one."""
    from ..core.errors import BadInput

    path = Path(name).expanduser()
    if path.is_file() or path.suffix in (".yaml", ".yml") or "/" in name:
        return path
    for known in shipped(sweeps):
        if known.stem == name:
            return known
    what = "sweep" if sweeps else "recipe"
    raise BadInput(f"{name}: no such {what} file, and no shipped {what} of that name (shipped: "
                   f"{', '.join(p.stem for p in shipped(sweeps)) or 'none'})")


def load_recipe(path: str | Path) -> tuple[Recipe, list[Stage]]:
    """Read and validate a recipe; every problem is one BadInput naming the file and line."""
    from ..core.devices import load_device
    from ..core.errors import BadInput
    from ..core.yamlfile import error_at, load_validated

    recipe, node = load_validated(Path(path), Recipe, "a recipe")
    stages = validate_stages(recipe.stages, Path(path), node, recipe.datasets,
                             built=recipe.zoo is not None)
    named = [(("device",), recipe.device)] + [
        (("stages", s.index - 1, "device"), getattr(s.options, "device", None)) for s in stages]
    for loc, device in named:
        if device:
            try:  # an unknown device fails now, at its line, listing the known ones
                load_device(device)
            except BadInput as exc:
                raise error_at(Path(path), node, loc, str(exc)) from None
    return recipe, stages


def stage_to_dict(stage: BaseModel) -> dict[str, Any]:
    """A stage as recipe YAML keys: only the options that differ from the stage's defaults."""
    model = type(stage)
    out = {"stage": stage.stage}
    for name, field in model.model_fields.items():
        value = getattr(stage, name)
        if name != "stage" and value != field.default:
            out[name] = value
    return out


def command_recipe(stage, options: BaseModel, source: Optional[Path],
                   base: Path) -> dict[str, Any]:
    """The recipe (as YAML-ready data) that reproduces ``edgekit STAGE`` run on ``source``
    with ``options``; paths are written relative to ``base``, the recipe's folder."""
    import datetime as dt
    import os

    def rel(value: Any) -> Any:
        if isinstance(value, list):
            return [rel(v) for v in value]
        if isinstance(value, Path) or (isinstance(value, str) and Path(value).exists()):
            return os.path.relpath(Path(value).expanduser().resolve(), base.resolve())
        return value

    today = dt.date.today().isoformat()
    if stage.name == "build":
        values = options.model_dump()
        zoo = {k: rel(values[k]) for k in ZooSource.model_fields if values.get(k) is not None}
        return {"schema": SCHEMA, "name": f"{values['family']}-build",
                "description": f"written by edgekit zoo build --save-recipe on {today}",
                "zoo": zoo, "stages": []}
    step = {"stage": stage.name, **options.non_default()}
    step = {k: rel(v) if k in DATA_OPTIONS or isinstance(v, Path) else v
            for k, v in step.items()}
    stem = Path(source).stem if source else step.get("device", "scaled")
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "name": re.sub(r"[^A-Za-z0-9_.-]", "-", f"{stem}-{stage.name}").lstrip("-.") or stage.name,
        "description": f"written by edgekit {stage.name} --save-recipe on {today}"}
    if source:
        doc["model"] = rel(Path(source))
    doc["stages"] = [step]
    return doc


def save_command_recipe(path: Path, stage, options: BaseModel, source: Optional[Path]) -> None:
    """Write ``command_recipe`` to ``path`` (atomically)."""
    import yaml

    from ..core.artifacts import write_text_atomic

    doc = command_recipe(stage, options, source, Path(path).parent)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    write_text_atomic(Path(path), text, force=True)
