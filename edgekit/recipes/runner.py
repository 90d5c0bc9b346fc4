"""``edgekit run``: a recipe executed stage by stage through the stages' library functions.

Each stage's options are validated by the stage's options model and handed to its function
(``edgekit.stages``), the same function and model the ``edgekit STAGE`` command uses, so a
recipe and the CLI share one execution path and cannot drift apart. Each stage also has the
command line a user would type to do the same (``edgekit quantize IN --mode int8 ... -o
OUT``), made from the options model: ``--dry-run`` prints it and ``stage.json`` records it.

Every stage's output lives in a content-addressed cache: the key is the sha256 of the stage's
name, its options (datasets, references and model files replaced by the sha256 of their
content), the sha256 of its input model, and, for the stages that take a device (scale,
profile), the device profile's content (and, for profile, the machine it measures on). An
unchanged stage is never run twice; a changed stage changes its output's hash, so only what
follows it runs again. A stage's folder is complete only once its ``stage.json`` exists
(written last, atomically): a run interrupted mid-stage leaves an incomplete folder that the
next run discards, and everything that finished is kept.

A run folder (``runs/NAME-TIMESTAMP``, and ``runs/latest`` pointing at the newest) holds every
output hard-linked from the cache as ``NN-ID.ext`` with its sidecar, and ``run.json``: the
stages with their commands, keys, timings and hashes, the gates and the provenance.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.errors import BadInput, EdgekitError, GateFailed, ctrl_c_stops
from .schema import DATA_OPTIONS, as_reference, load_recipe, makes_model, stage_to_dict
from ..core.results import RUN_SCHEMA
from ..stages import get as get_stage
from ..stages.base import QUIET, options_argv

STAGE_SCHEMA = "edgekit.stage/1"


@dataclass
class Step:
    """A stage resolved for execution: where its input is and what its key hashes."""

    index: int  # 0 for the zoo build, then the recipe's 1-based stage numbers
    id: str
    name: str  # command: build (zoo build), scale, prune, finetune, quantize, export, profile
    options: dict[str, Any]  # non-default command options, references resolved to paths
    keyed: dict[str, Any]  # the same, with content hashes where the options name files
    input: Optional[str] = None  # id of the step whose output it reads
    device: Optional[str] = None
    key: Optional[str] = None  # None until the inputs are known (dry-run)
    argv: list[str] = field(default_factory=list)
    record: Optional[dict] = None  # stage.json once done
    source_suffix: str = ""  # of the model it reads: its input step's output, or the recipe's

    @property
    def suffix(self) -> str:
        from types import SimpleNamespace

        return get_stage(self.name).suffix(SimpleNamespace(fmt=self.options.get("fmt")),
                                           self.source_suffix)

    @property
    def makes_model(self) -> bool:
        return makes_model(self.name)


class Pipeline:
    """A loaded recipe, ready to plan (``dry-run``) or run."""

    def __init__(self, path: Path, cache_dir: Path, base: Optional[Path] = None):
        """``base``: where relative paths in the recipe start (default: the recipe's folder)."""
        self.path = Path(path)
        self.base = Path(base) if base is not None else self.path.absolute().parent
        self.recipe, self.stages = load_recipe(self.path)
        self.cache = Path(cache_dir).resolve()  # stage.json records absolute paths
        self._hashes: dict[tuple, str] = {}
        self.steps = self._steps()

    # --- planning --------------------------------------------------------------------------
    def _steps(self) -> list[Step]:
        r = self.recipe
        steps: list[Step] = []
        if r.zoo is not None:
            z = r.zoo.model_dump(exclude_none=True)
            keyed = dict(z)
            if "weights" in z and z["weights"] != "imagenet":
                path = self._local(z["weights"])
                z["weights"], keyed["weights"] = str(path), ("file", lambda: self._file_hash(path))
            steps.append(Step(0, "build", "build", z, keyed))
        for stage in self.stages:
            options = stage_to_dict(stage.options)
            options.pop("stage")
            if get_stage(stage.name).needs_device and r.device and "device" not in options:
                options["device"] = r.device
            if stage.name == "scale":
                for k, v in r.budget.model_dump(exclude_none=True).items():
                    options.setdefault(k, v)
            prev = next((s.id for s in reversed(steps) if s.makes_model), None)
            step = Step(stage.index, stage.id, stage.name, {}, {},
                        input=stage.input or prev, device=options.get("device"))
            source = next((s for s in steps if s.id == step.input), None)
            step.source_suffix = source.suffix if source else (
                Path(r.model).suffix.lower() if r.model else "")
            for key, value in options.items():
                step.options[key], step.keyed[key] = self._resolve(key, value)
            steps.append(step)
        return steps

    def _resolve(self, key: str, value: Any) -> tuple[Any, Any]:
        """(value for the command line, value for the cache key) of one option."""
        if isinstance(value, list):
            pairs = [self._resolve(key, v) for v in value]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        ref = as_reference(value)
        if ref:
            value, name = ref, ref[1:]
            if name in self.recipe.datasets:
                return self._resolve(key, self.recipe.datasets[name])
            return value, value  # an earlier stage's output: filled in when it has run
        if key in DATA_OPTIONS and isinstance(value, str):
            spec = self._data(value)
            return spec, ("dataset", lambda: self._data_hash(spec))
        if isinstance(value, Path):
            path = self._local(value)
            return str(path), ("file", lambda: self._file_hash(path))
        return value, value

    def _local(self, value) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def _data(self, spec: str) -> str:
        from ..core.data import is_named

        if is_named(spec) and not (self.base / spec).exists():
            return spec  # a named dataset such as fashion-mnist:train
        return str(self._local(spec))

    def _data_hash(self, spec: str) -> str:
        from ..core.data import is_named, resolve_named

        if is_named(spec) and not Path(spec).exists():
            images = resolve_named(spec)  # the IDX images file; its labels file beside it
            labels = images.with_name(images.name.replace("images-idx3", "labels-idx1"))
            return "+".join(self._file_hash(p) for p in (images, labels) if p.exists())
        if not Path(spec).exists():
            raise BadInput(f"{self.path}: dataset {spec}: no such file or folder")
        return self._file_hash(Path(spec))

    def _file_hash(self, path: Path) -> str:
        from ..core.artifacts import sha256_of

        if not path.exists():
            raise BadInput(f"{self.path}: {path}: no such file or folder")
        st = path.stat()
        memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if memo not in self._hashes:
            self._hashes[memo] = sha256_of(path)
        return self._hashes[memo]

    def key_of(self, step: Step, done: dict[str, Step]) -> Optional[str]:
        """The step's cache key, or None while an input it needs has not run yet."""
        from .. import __version__

        config: dict[str, Any] = {}
        for k, v in step.keyed.items():
            config[k] = self._keyed(v, done)
        if step.input is not None:
            if step.input not in done or done[step.input].record is None:
                return None
            config["<input>"] = done[step.input].record["output"]["sha256"]
        elif self.recipe.model is not None and step.index > 0:
            config["<input>"] = self._file_hash(self._local(self.recipe.model))
        if any(_pending(v) for v in config.values()):
            return None
        if get_stage(step.name).needs_device and step.device:
            from ..core.devices import load_device

            config["<device>"] = load_device(step.device).model_dump(mode="json")
        if step.name == "profile":  # a local measurement belongs to this machine
            config["<host>"] = [platform.node(), platform.machine(), platform.processor()]
        doc = {"stage": step.name, "config": config, "edgekit": __version__}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()

    def _keyed(self, value: Any, done: dict[str, Step]) -> Any:
        if isinstance(value, list):
            return [self._keyed(v, done) for v in value]
        if isinstance(value, tuple):
            return [value[0], value[1]()]
        if isinstance(value, str) and value.startswith("@"):
            step = done.get(value[1:])
            return step.record["output"]["sha256"] if step and step.record else _PENDING
        return value

    def call(self, step: Step, done: dict[str, Step]) -> tuple[Optional[str], dict[str, Any]]:
        """(the model the step starts from, its option values), references to earlier
        steps' outputs filled in (``<id>`` while they have not run)."""
        def fill(v):
            if isinstance(v, str) and v.startswith("@"):
                s = done.get(v[1:])
                return s.record["output"]["path"] if s and s.record else f"<{v[1:]}>"
            return v

        values = {k: fill(v) if not isinstance(v, list) else [fill(x) for x in v]
                  for k, v in step.options.items()}
        if step.name == "build":
            return None, values
        source = (fill("@" + step.input) if step.input else
                  str(self._local(self.recipe.model)) if self.recipe.model else None)
        return source, values

    def argv(self, step: Step, done: dict[str, Step], output: Path) -> list[str]:
        """The edgekit command line that does what ``step`` does, writing ``output``."""
        source, values = self.call(step, done)
        stage = get_stage(step.name)
        head = ["zoo", "build"] if step.name == "build" else [step.name]
        if source and stage.source == "from":
            head += ["--from", source]
        elif source:
            head.append(source)
        return [*head, *options_argv(stage.options, values), "-o", str(output)]

    def problems(self) -> list[str]:
        """Inputs the run would miss (datasets, model files, weights), one line each."""
        out = []
        if self.recipe.model is not None and not self._local(self.recipe.model).exists():
            out.append(f"model {self._local(self.recipe.model)}: no such file or folder")
        for step in self.steps:
            for value in step.keyed.values():
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, tuple):
                        try:
                            v[1]()
                        except EdgekitError as exc:
                            out.append(f"{step.id}: {str(exc).removeprefix(f'{self.path}: ')}")
        return list(dict.fromkeys(out))

    # --- running -----------------------------------------------------------------------------
    def plan(self) -> list[dict]:
        """What a run would do, without running: each step's command and whether it is cached."""
        done: dict[str, Step] = {}
        rows = []
        for step in self.steps:
            try:
                step.key = self.key_of(step, done)
            except EdgekitError:  # a missing input: listed by problems()
                step.key = None
            cached = step.key is not None and (self.cache / step.key / "stage.json").is_file()
            if cached:
                step.record = json.loads((self.cache / step.key / "stage.json").read_text())
            out = (self.cache / step.key / f"out{step.suffix}") if step.key else Path(
                f"<{step.id}{step.suffix}>")
            rows.append({"index": step.index, "id": step.id, "stage": step.name,
                         "key": step.key, "cached": cached,
                         "command": _shell(["edgekit", *self.argv(step, done, out)])})
            done[step.id] = step
        return rows

    def run(self, runs_dir: Path, *, use_cache: bool = True,
            announce: Callable[[Step, bool], None] = lambda step, cached: None,
            watch: Optional[Callable[[Step], Any]] = None,
            show: Callable[[Step, Any], None] = lambda step, result: None) -> dict:
        """Run every step (from the cache where it can), then the gates; write the run folder.

        Returns the run document (also ``run.json``); a failed gate raises GateFailed after
        the folder is complete, an interrupted stage leaves the finished ones in the cache.
        ``watch(step)``: a context manager giving the Reporter of a running step; ``show``
        gets each step's result once it has run (not for cached ones)."""
        missing = self.problems()
        if missing:  # before anything runs
            raise BadInput(f"{self.path}: {missing[0]}" + (
                f" (+{len(missing) - 1} more; see --dry-run)" if len(missing) > 1 else ""))
        self.cache.mkdir(parents=True, exist_ok=True)
        started = dt.datetime.now(dt.timezone.utc)
        folder = _new_run_folder(Path(runs_dir), self.recipe.name, started)
        doc = self.document(folder, started)
        t0 = time.perf_counter()
        done: dict[str, Step] = {}
        try:
            for step in self.steps:
                s0 = time.perf_counter()
                cached = self._execute(step, done, use_cache, announce, watch, show)
                done[step.id] = step
                doc["stages"].append(self._link(step, folder, cached,
                                                 time.perf_counter() - s0))
                _write_json(folder / "run.json", doc)
            from .gates import evaluate_gates

            doc["gates"] = evaluate_gates(self.recipe, self.steps)
            failed = [g for g in doc["gates"] if not g["passed"]]
            doc["status"] = "gates failed" if failed else "passed"
        except KeyboardInterrupt:
            doc["status"] = "interrupted"
            raise
        except EdgekitError as exc:
            doc["status"] = "failed"
            doc["error"] = str(exc)
            raise
        finally:
            doc["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            doc["wall_s"] = round(time.perf_counter() - t0, 3)
            _write_json(folder / "run.json", doc)
        if failed:
            raise GateFailed(f"{len(failed)} gate(s) failed: " + "; ".join(
                g["detail"] for g in failed), hint=f"see {folder / 'run.json'}")
        return doc

    def document(self, folder: Path, started: dt.datetime,
                 recipe: Optional[Path] = None) -> dict:
        """The run document of a run into ``folder`` before any stage ran (``recipe``: the
        recipe file to name, default the one loaded)."""
        from ..core.artifacts import sha256_of

        recipe = recipe or self.path
        return {"schema": RUN_SCHEMA, "status": "running", "name": self.recipe.name,
                "recipe": {"path": str(recipe), "sha256": sha256_of(recipe),
                           "device": self.recipe.device,
                           "description": self.recipe.description},
                "run_dir": str(folder), "cache_dir": str(self.cache),
                "started": started.isoformat(timespec="seconds"), "finished": None,
                "wall_s": None, "stages": [], "gates": [], "provenance": provenance()}

    def _execute(self, step: Step, done: dict[str, Step], use_cache: bool,
                 announce: Callable[[Step, bool], None], watch, show) -> bool:
        """Run ``step`` unless the cache has it; True when it came from the cache."""
        from ..core.artifacts import sha256_of, size_of

        step.key = self.key_of(step, done)
        assert step.key is not None  # every input ran before this step
        entry = self.cache / step.key
        record_path = entry / "stage.json"
        if use_cache and record_path.is_file():
            step.record = json.loads(record_path.read_text())
            announce(step, True)
            return True
        if entry.exists():  # an earlier run was interrupted here, or --no-cache
            shutil.rmtree(entry)
        entry.mkdir(parents=True)
        output = entry / f"out{step.suffix}"
        step.argv = self.argv(step, done, output)
        announce(step, False)
        t0 = time.perf_counter()
        stage = get_stage(step.name)
        source, values = self.call(step, done)
        try:
            options = stage.validate(values)
            # a Ctrl-C that a library swallowed (keras' compile has bare excepts) still
            # stops the run: the stage may be incomplete, so it is not cached
            with ctrl_c_stops(), (watch(step) if watch else
                                  contextlib.nullcontext(QUIET)) as reporter:
                result = stage.run(Path(source) if source else None, options, output,
                                   force=False, reporter=reporter)
        except EdgekitError as exc:  # say which stage, keep the exit code
            raise type(exc)(f"stage {step.id} ({step.name}): {exc.message}",
                            hint=exc.hint) from None
        if not output.exists():
            raise EdgekitError(f"stage {step.id}: edgekit {step.name} wrote no output")
        show(step, result)
        record = stage_record(step, time.perf_counter() - t0, output, sha256_of(output),
                              size_of(output), platform.node())
        _write_json(record_path, record)  # last: the entry is complete from here on
        step.record = record
        return False

    def _link(self, step: Step, folder: Path, cached: bool, wall_s: float) -> dict:
        """Put the step's output (and sidecar) into the run folder as NN-ID.ext."""
        rec = step.record
        src = Path(rec["output"]["path"])
        dst = folder / f"{step.index:02d}-{step.id}{step.suffix}"
        _link_file(src, dst)
        side = src.with_name(src.name + ".json")
        if side.is_file():
            _link_file(side, dst.with_name(dst.name + ".json"))
        return {"index": step.index, "id": step.id, "stage": step.name, "key": step.key,
                "cached": cached, "seconds": rec["seconds"], "wall_s": round(wall_s, 3),
                "command": rec["command"], "input": step.input,
                "output": {**rec["output"], "path": str(dst), "cache_path": rec["output"]["path"]}}


def stage_record(step: Step, seconds: float, output: Path, sha256: str, size: int,
                 host: str, **where: Any) -> dict:
    """The ``stage.json`` of a finished step whose output is ``output`` (in the cache)."""
    return {"schema": STAGE_SCHEMA, "stage": step.name, "id": step.id, "key": step.key,
            "command": _shell(["edgekit", *step.argv]), "argv": step.argv,
            "seconds": round(seconds, 3),
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "host": host, **where,
            "output": {"path": str(output), "sha256": sha256, "size_bytes": size}}


def provenance() -> dict:
    """Where and with what a run ran."""
    from .. import __version__

    return {"edgekit": __version__, "python": platform.python_version(),
            "host": platform.node(), "machine": platform.machine()}


def open_recipe(recipe: str, cache_dir: Path) -> Pipeline:
    """The Pipeline of a recipe file, or of a shipped recipe named without a path (whose
    relative paths are then read from the working folder)."""
    from .schema import recipe_path

    path = recipe_path(recipe)
    return Pipeline(path, cache_dir,
                    base=Path.cwd() if not Path(recipe).expanduser().exists() else None)


_PENDING = object()


def _pending(value: Any) -> bool:
    if isinstance(value, list):
        return any(_pending(v) for v in value)
    return value is _PENDING


def _shell(argv: list[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


def _write_json(path: Path, doc: dict) -> None:
    from ..core.artifacts import write_json_atomic

    write_json_atomic(path, doc)


def _link_file(src: Path, dst: Path) -> None:
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links: copy
        shutil.copy2(src, dst)


def _new_run_folder(runs: Path, name: str, started: dt.datetime) -> Path:
    runs = runs.resolve()
    runs.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    folder, n = runs / f"{name}-{stamp}", 1
    while folder.exists():
        n += 1
        folder = runs / f"{name}-{stamp}-{n}"
    folder.mkdir()
    latest = runs / "latest"
    tmp = runs / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        tmp.symlink_to(folder.name)
        os.replace(tmp, latest)
    except OSError:  # no symlinks here: runs/latest is not made
        pass
    return folder
