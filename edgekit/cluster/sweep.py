"""Sweep files: many recipes written once, expanded into variants and then into jobs.

A sweep file is either a recipe template with a ``matrix`` (every combination of the axes'
values is one variant; ``"${axis}"`` in the template is replaced by the variant's value) or a
list of ``recipes`` (files, or names of shipped recipes). Each variant is an ordinary recipe,
validated as ``edgekit run`` validates one, and its stages are the same stages.

A *job* is one stage of one or more variants: variants that share a prefix (the same build
and fine-tuning, quantized two ways) share its jobs, found by each step's *plan key*, the
cache key it will have, with each input's output hash replaced by the input's own plan key.
Stages are deterministic (same inputs, same bytes), so equal plan keys mean equal outputs.
Nothing here imports Ray: ``--dry-run`` and the checks run without it.
"""

from __future__ import annotations

import itertools
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..core.errors import BadInput, EdgekitError
from ..recipes.runner import Pipeline, Step

SWEEP_SCHEMA = "edgekit.sweep/1"
_AXIS = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
Scalar = str | int | float | bool


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: Literal["edgekit.sweep/1"] = Field(SWEEP_SCHEMA, alias="schema")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    matrix: dict[str, list[Scalar]] = Field(default_factory=dict)
    exclude: list[dict[str, Scalar]] = Field(default_factory=list)
    recipe: Optional[dict[str, Any]] = None  # a recipe without schema and name
    recipes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _shape(self) -> "SweepFile":
        if (self.recipe is None) == (not self.recipes):
            raise ValueError("give either recipe (a template) with a matrix, or recipes (a "
                             "list of recipe files), not both")
        if self.recipes and (self.matrix or self.exclude):
            raise ValueError("matrix and exclude apply to recipe (a template), not to recipes")
        if self.recipe is not None:
            if not self.matrix:
                raise ValueError("matrix: empty (give at least one axis and its values)")
            for axis, values in self.matrix.items():
                if not _AXIS.fullmatch(axis):
                    raise ValueError(f"matrix: {axis!r} is not a valid axis name")
                if not values:
                    raise ValueError(f"matrix.{axis}: no values (an empty axis makes no "
                                     "variants)")
                if len(set(map(str, values))) != len(values):
                    raise ValueError(f"matrix.{axis}: a value is listed twice")
            for rule in self.exclude:
                unknown = set(rule) - set(self.matrix)
                if unknown:
                    raise ValueError(f"exclude: {sorted(unknown)[0]!r} is not a matrix axis")
            for key in ("schema", "name"):
                if key in self.recipe:
                    raise ValueError(f"recipe: leave out {key!r} (each variant's is made "
                                     "from the sweep's)")
        return self


@dataclass
class Variant:
    name: str
    values: dict[str, Scalar]  # the matrix values that made it ({} for a listed recipe)
    pipe: Pipeline


@dataclass
class Job:
    """One stage to run once for every variant that has it."""

    plan_key: str
    step: Step  # as the first variant that has it sees it
    pipe: Pipeline  # that variant's pipeline (for keys, commands and calls)
    uses: list[tuple[str, str]] = field(default_factory=list)  # (variant, step id)
    needs: list[str] = field(default_factory=list)  # plan keys of the jobs it reads
    device: Optional[str] = None  # the catalog device it measures on (None: any CPU)
    # filled in while the sweep runs
    state: str = "waiting"  # waiting, queued, running, done, failed, not run
    cached: Optional[bool] = None
    node: Optional[str] = None
    where: Optional[str] = None  # the physical device (lab name) that measured it
    seconds: Optional[float] = None
    attempts: int = 0  # times a node started it (a retry after a node died counts)
    error: Optional[str] = None
    code: Optional[int] = None  # the exit code of the error that stopped it

    @property
    def name(self) -> str:
        return f"{self.uses[0][0]}/{self.step.id}"


class Sweep:
    """A loaded sweep: its variants (each a Pipeline) and its jobs."""

    def __init__(self, path: str | Path, cache_dir: Path):
        """``path``: a sweep file, or the name of a shipped one (whose relative paths are
        then read from the working folder)."""
        from ..core.yamlfile import load_validated
        from ..recipes.schema import recipe_path

        self.path = recipe_path(str(path), sweeps=True)
        self.base = (Path.cwd() if not Path(path).expanduser().exists()
                     else self.path.absolute().parent)
        self.doc, _ = load_validated(self.path, SweepFile, "a sweep file")
        self.cache = Path(cache_dir).resolve()
        self._tmp = Path(tempfile.mkdtemp(prefix="edgekit-sweep-"))
        try:
            self.variants = self._variants()
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
        from ..stages.profile import LabOptions

        for v in self.variants:
            for step in v.pipe.steps:
                lab = [k for k in LabOptions.model_fields if step.options.get(k) is not None]
                if lab:
                    raise BadInput(f"{self.path}: variant {v.name}, step {step.id}: {lab[0]} "
                                   "has no place in a sweep (its jobs already run on the "
                                   "sweep's Ray, each device job on a device of its kind)")
        self.step_keys: dict[str, dict[str, str]] = {}  # variant -> step id -> plan key
        self.jobs = plan_jobs(self.variants, self.step_keys)

    @property
    def name(self) -> str:
        return self.doc.name

    def _variants(self) -> list[Variant]:
        if self.doc.recipes:
            listed = [self._listed(r) for r in self.doc.recipes]
            names = [v.name for v in listed]
            for name in names:
                if names.count(name) > 1:  # each variant has its own folder, by name
                    raise BadInput(f"{self.path}: two recipes are both named {name}")
            return listed
        out, names = [], set()
        axes = list(self.doc.matrix)
        used = _placeholders(self.doc.recipe)
        for axis in axes:
            if axis not in used:
                raise BadInput(f"{self.path}: matrix axis {axis!r} is not used in recipe "
                               f"(write \"${{{axis}}}\" where its value goes)")
        for unknown in sorted(used - set(axes)):
            raise BadInput(f"{self.path}: recipe uses ${{{unknown}}}, which is no matrix axis "
                           f"(axes: {', '.join(axes)})")
        for combo in itertools.product(*self.doc.matrix.values()):
            values = dict(zip(axes, combo))
            if any(all(str(values[k]) == str(v) for k, v in rule.items())
                   for rule in self.doc.exclude):
                continue
            name = _variant_name(self.doc.name, combo)
            if name in names:
                raise BadInput(f"{self.path}: two variants would both be named {name}")
            names.add(name)
            doc = {"schema": "edgekit.recipe/1", "name": name,
                   **_substitute(self.doc.recipe, values)}
            out.append(Variant(name, values, self._pipeline(name, doc)))
        if not out:
            raise BadInput(f"{self.path}: exclude leaves no variant to run")
        return out

    def _pipeline(self, name: str, doc: dict) -> Pipeline:
        """The variant's recipe validated as a recipe file; errors name the sweep file."""
        import yaml

        tmp = self._tmp / f"{name}.yaml"
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        try:
            pipe = Pipeline(tmp, self.cache, base=self.base)
        except EdgekitError as exc:
            where = f"{self.path} (variant {name})"
            raise type(exc)(re.sub(re.escape(str(tmp)) + r"(:\d+)?", where, exc.message),
                            hint=exc.hint) from None
        pipe.variant_doc = doc  # what the run folder writes as the variant's recipe
        return pipe

    def _listed(self, recipe: str) -> Variant:
        import yaml

        from ..recipes.runner import open_recipe

        path = Path(recipe).expanduser()
        local = path if path.is_absolute() else self.base / path
        pipe = open_recipe(str(local) if local.exists() else recipe, self.cache)
        pipe.variant_doc = yaml.safe_load(pipe.path.read_text())
        return Variant(pipe.recipe.name, {}, pipe)

    def devices(self) -> dict[str, int]:
        """Catalog devices the jobs measure on, and how many jobs each."""
        out: dict[str, int] = {}
        for job in self.jobs.values():
            if job.device:
                out[job.device] = out.get(job.device, 0) + 1
        return out

    def problems(self) -> list[str]:
        """Inputs some variant would miss, one line each (variant named)."""
        out = []
        for v in self.variants:
            out += [f"{v.name}: {p}" for p in v.pipe.problems()]
        return out


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*map(_placeholders, value.values()), *map(_placeholders, value))
    if isinstance(value, list):
        return set().union(*map(_placeholders, value)) if value else set()
    return set(_PLACEHOLDER.findall(value)) if isinstance(value, str) else set()


def _substitute(value: Any, values: dict[str, Scalar]) -> Any:
    """``value`` with each "${axis}" replaced: a string that is only a placeholder takes the
    value itself (a number stays a number), one inside text takes its text."""
    if isinstance(value, dict):
        return {_substitute(k, values): _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    if not isinstance(value, str):
        return value
    whole = _PLACEHOLDER.fullmatch(value)
    if whole:
        return values[whole[1]]
    return _PLACEHOLDER.sub(lambda m: str(values[m[1]]), value)


def _variant_name(sweep: str, combo: tuple) -> str:
    words = [re.sub(r"[^A-Za-z0-9_.-]+", "_", str(v)).strip("_.-") or "x" for v in combo]
    return "-".join([sweep, *words])


def step_device(step: Step) -> Optional[str]:
    """The catalog device a step measures on (it needs that device to itself), else None."""
    from ..stages import get

    if get(step.name).measures(step.options):
        return step.options.get("device") or step.device or "host"
    return None


def plan_jobs(variants: list[Variant], step_keys: dict[str, dict[str, str]]) -> dict[str, Job]:
    """Every variant's steps as jobs, shared where their plan keys are equal (in run order:
    a job comes after the jobs it reads); ``step_keys`` gets each variant's plan keys."""
    jobs: dict[str, Job] = {}
    for v in variants:
        fake: dict[str, Any] = {}  # step id -> a stand-in whose "output hash" is its plan key
        for step in v.pipe.steps:
            try:
                key = v.pipe.key_of(step, fake)
            except EdgekitError:  # a missing input file: Sweep.problems names it
                key = f"<missing:{v.name}/{step.id}>"
            assert key is not None  # every input has a stand-in
            fake[step.id] = SimpleNamespace(record={"output": {"sha256": key, "path": ""}})
            job = jobs.get(key)
            if job is None:
                needs = [fake[s].record["output"]["sha256"] for s in step_inputs(step)]
                job = jobs[key] = Job(key, step, v.pipe, needs=needs, device=step_device(step))
            job.uses.append((v.name, step.id))
        step_keys[v.name] = {sid: f.record["output"]["sha256"] for sid, f in fake.items()}
    return jobs


def step_inputs(step: Step) -> list[str]:
    """Ids of the earlier steps whose outputs ``step`` reads (its input, then references)."""
    ids = [step.input] if step.input else []
    for value in step.options.values():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str) and v.startswith("@") and v[1:] not in ids:
                ids.append(v[1:])
    return ids


def plan_rows(sweep: Sweep) -> list[dict]:
    """What a sweep would do, without Ray: each job, the device it needs, whether the cache
    already has it (known once every input it reads is cached too)."""
    import json

    records: dict[str, dict] = {}
    rows = []
    for job in sweep.jobs.values():
        keys = sweep.step_keys[job.uses[0][0]]
        inputs = step_inputs(job.step)
        key = None
        if all(keys.get(s) in records for s in inputs) and not job.plan_key.startswith("<"):
            done = {s: SimpleNamespace(record=records[keys[s]]) for s in inputs}
            try:
                key = job.pipe.key_of(job.step, done)
            except EdgekitError:
                key = None
        entry = sweep.cache / key / "stage.json" if key else None
        cached = bool(entry and entry.is_file())
        if cached:
            records[job.plan_key] = json.loads(entry.read_text())
        rows.append({"id": job.name, "stage": job.step.name, "plan_key": job.plan_key,
                     "key": key, "cached": cached, "device": job.device,
                     "variants": [v for v, _ in job.uses]})
    return rows
