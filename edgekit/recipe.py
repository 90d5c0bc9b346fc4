"""Recipes: a deployment written down once as YAML, validated with pydantic.

A recipe names its input (a model file or a zoo build), the device, the datasets, the ordered
stages and the gates. Each stage *is* an edgekit command: ``{stage: quantize, mode: int8,
calib: fashion-mnist:train}`` takes exactly the options of ``edgekit quantize``, because the
schema of every stage is made from the command's own options. A recipe and the command line
therefore cannot drift apart, and ``--save-recipe`` writes the same keys back.

Errors name the file and the line of the mistake (``recipe.yaml:12: stages.1.mode: ...``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

SCHEMA = "edgekit.recipe/1"
STAGES = ("scale", "prune", "finetune", "quantize", "export", "profile")
# Options the runner sets itself: each stage's input is the previous stage's output.
MANAGED = {"model", "output", "force", "json_out", "from_model"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ZooSource(_Strict):
    family: str
    width: Optional[float] = None
    depth: Optional[float] = None
    resolution: Optional[int] = None
    classes: int = 1000
    weights: Optional[str] = None  # "imagenet" or a PyTorch checkpoint
    seed: int = 0


class Gates(_Strict):
    max_accuracy_drop: Optional[float] = Field(None, ge=0, description="points of top-1")
    max_latency_ms: Optional[float] = Field(None, gt=0)
    max_size_mb: Optional[float] = Field(None, gt=0)


class Recipe(_Strict):
    schema_: Literal["edgekit.recipe/1"] = Field(SCHEMA, alias="schema")
    name: str
    description: str = ""
    model: Optional[Path] = None  # an existing model file ...
    zoo: Optional[ZooSource] = None  # ... or a zoo build
    device: Optional[str] = None
    stages: list[dict[str, Any]] = Field(min_length=1)
    gates: Gates = Gates()

    @model_validator(mode="after")
    def _one_source(self) -> "Recipe":
        if (self.model is None) == (self.zoo is None):
            raise ValueError("give exactly one of model (a file) or zoo (a family to build)")
        return self


def _option_type(param) -> Any:
    """The Python type of one command option (its annotation in the command's signature)."""
    return Optional[param.type_descriptor.annotation]


@lru_cache(maxsize=None)
def stage_model(stage: str) -> type[BaseModel]:
    """A pydantic model of ``stage``'s options, made from the ``edgekit STAGE`` command."""
    from typer.main import get_command

    from .cli import app

    command = get_command(app).commands[stage]
    fields: dict[str, Any] = {"stage": (Literal[stage], ...)}
    for param in command.params:
        if param.name in MANAGED or param.param_type_name != "option":
            continue
        default = list(param.default or []) if param.multiple else param.default
        fields[param.name] = (_option_type(param), default)
    return create_model(f"{stage.title()}Stage", __config__=ConfigDict(extra="forbid"), **fields)


def validate_stages(stages: list[dict[str, Any]], path: Path, node) -> list[BaseModel]:
    """Each stage validated by its command's schema; errors point at the stage's line."""
    from .yamlfile import error_at, validation_error

    out = []
    for i, raw in enumerate(stages):
        name = raw.get("stage")
        if name not in STAGES:
            raise error_at(path, node, ("stages", i, "stage"),
                           f"unknown stage {name!r} (known: {', '.join(STAGES)})")
        clean = {k.replace("-", "_"): v for k, v in raw.items()}
        try:
            out.append(stage_model(name).model_validate(clean))
        except ValidationError as exc:
            raise validation_error(path, node, exc, prefix=("stages", i)) from None
    return out


def load_recipe(path: str | Path) -> tuple[Recipe, list[BaseModel]]:
    """Read and validate a recipe; every problem is one BadInput naming the file and line."""
    from .yamlfile import load_validated

    recipe, node = load_validated(Path(path), Recipe, "a recipe")
    return recipe, validate_stages(recipe.stages, Path(path), node)


def stage_to_dict(stage: BaseModel) -> dict[str, Any]:
    """A stage as recipe YAML keys: only the options that differ from the command's defaults."""
    model = type(stage)
    out = {"stage": stage.stage}
    for name, field in model.model_fields.items():
        value = getattr(stage, name)
        if name != "stage" and value != field.default:
            out[name] = value
    return out
