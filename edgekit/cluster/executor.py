"""``edgekit sweep``: a sweep's jobs as Ray tasks, the stage cache kept by the driver.

The driver walks the jobs in order. A job whose inputs are done gets its cache key (the same
key ``edgekit run`` computes); if the cache has it, it is done without running, on any node.
Otherwise it becomes a Ray task: stages that only compute need one CPU on any node; a stage
that measures needs one unit of its device's resource (``device:raspberry-pi-4``), so a
device measures one thing at a time, across sweeps too. Jobs on ``host`` (this machine)
also take every CPU of the node, so nothing else runs beside a timing.

Results come back through the object store and the driver writes each cache entry whole (a
temporary folder renamed into place; a sweep that finds the entry already made by another
uses that one), so two sweeps sharing a cache never see half an entry. Ray retries a job
whose node died on another node offering the same resources; a job no alive node can take
any more is reported as not run, with the reason. Ctrl-C cancels what is outstanding; what
finished is in the cache, so a rerun resumes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

from ..core.errors import BadInput, EnvironmentProblem, GateFailed
from .sweep import Job, Sweep, step_inputs

SWEEP_RUN_SCHEMA = "edgekit.sweep-run/1"
Watch = Callable[[list[Job]], None]


def run_sweep(sweep: Sweep, runs_dir: Path, *, address: Optional[str] = None,
              lab: Optional[Path] = None, num_cpus: Optional[int] = None,
              use_cache: bool = True, watch: Watch = lambda jobs: None) -> dict:
    """Run every job of ``sweep`` (from the cache where it can) on Ray; write the run folder.

    Returns the sweep's run document (also ``run.json``). Raises after the folder is written:
    the first job's error when some did not run, GateFailed when a variant's gate failed."""
    from .lab import load_lab, this_machine
    from .ray_session import ray_session

    missing = sweep.problems()
    if missing:
        raise BadInput(f"{sweep.path}: {missing[0]}" + (
            f" (+{len(missing) - 1} more; see --dry-run)" if len(missing) > 1 else ""))
    devices = [this_machine(), *(load_lab(lab) if lab else [])]
    with ray_session(address, devices, num_cpus) as where:
        nodes = cluster_nodes()
        cpus = check_devices(sweep.devices(), nodes, str(sweep.path))  # before any job starts
        sweep.cache.mkdir(parents=True, exist_ok=True)
        started = dt.datetime.now(dt.timezone.utc)
        from ..recipes.runner import _new_run_folder, provenance

        folder = _new_run_folder(Path(runs_dir), sweep.name, started)
        doc = {"schema": SWEEP_RUN_SCHEMA, "status": "running", "name": sweep.name,
               "sweep": _file_facts(sweep.path, sweep.doc.description),
               "ray": {"address": where, "nodes": nodes}, "run_dir": str(folder),
               "cache_dir": str(sweep.cache), "started": started.isoformat(timespec="seconds"),
               "finished": None, "wall_s": None, "jobs": [], "variants": [],
               "provenance": provenance()}
        t0 = time.perf_counter()
        driver = _Driver(sweep, cpus, use_cache, watch)
        try:
            driver.run()
            doc["status"] = "finished"
        except KeyboardInterrupt:
            doc["status"] = "interrupted"
            driver.interrupted()
            raise
        finally:
            doc["wall_s"] = round(time.perf_counter() - t0, 3)
            doc["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            doc["jobs"] = [driver.row(j) for j in sweep.jobs.values()]
            doc["variants"] = [_write_variant(sweep, v, folder, driver, started)
                               for v in sweep.variants]
            doc["counts"] = _counts(sweep.jobs.values())
            if doc["status"] == "finished":
                doc["status"] = _status(doc)
            from ..core.artifacts import write_json_atomic

            write_json_atomic(folder / "run.json", doc)
            if doc["status"] == "interrupted" and where != "local":
                # a cluster outlives this driver: its running jobs are stopped, after the run
                # folder is written (a local Ray goes with the session, so nothing is cancelled:
                # a cancel racing a reply from a worker Ctrl-C also reached aborts Ray 2.60's
                # core worker, ray-project/ray#54527)
                driver.cancel()
    _raise_for(doc, folder)
    return doc


def cluster_nodes() -> list[dict]:
    """The alive nodes: id, host name, address, CPUs and the devices they offer."""
    import ray

    from .lab import resource_devices

    return [{"node": n["NodeID"], "hostname": n["NodeManagerHostname"],
             "address": n["NodeManagerAddress"], "cpus": n["Resources"].get("CPU", 0),
             "devices": resource_devices(n["Resources"])}
            for n in ray.nodes() if n["Alive"]]


def check_devices(needed: dict[str, int], nodes: list[dict], what: str) -> int:
    """Refuse (exit 2) ``what`` when it needs a device no node offers (``needed``: device ->
    jobs); return the CPUs a job on ``host`` takes (every CPU of the smallest node offering it)."""
    offered = sorted({d for n in nodes for d in n["devices"]})
    for device, count in needed.items():
        if device not in offered:
            raise BadInput(f"{what}: {count} job(s) measure on {device}, and no node "
                           f"offers it (offered: {', '.join(offered) or 'none'})",
                           hint="declare it with `edgekit lab start --lab lab.yaml` on the "
                                "node it is attached to, or `--lab` for a local Ray")
    hosts = [n for n in nodes if "host" in n["devices"]]
    elsewhere = sorted({n["hostname"] for n in hosts} - {platform.node()})
    if "host" in needed and elsewhere:
        # a measurement on `host` is cached as this machine's (the key of `edgekit run`)
        raise BadInput(f"device host means this machine ({platform.node()}), but node(s) on "
                       f"{', '.join(elsewhere)} offer it", hint="in those nodes' lab files, "
                       "name the catalog device each machine is")
    return int(min((n["cpus"] for n in hosts), default=1)) or 1


class _Driver:
    """Submits ready jobs, collects finished ones, writes their cache entries."""

    def __init__(self, sweep: Sweep, host_cpus: int, use_cache: bool, watch: Watch):
        import ray

        from .jobs import Blobs, run_job

        self.sweep, self.host_cpus, self.use_cache, self.watch = sweep, host_cpus, use_cache, watch
        self.jobs = list(sweep.jobs.values())
        self.records: dict[str, dict] = {}  # plan key -> stage record
        self.pending: dict[Any, Job] = {}  # object ref -> job
        self.blobs = Blobs()
        self.task = ray.remote(run_job)
        self.board = _board()

    def run(self) -> None:
        import ray

        last_check = 0.0
        while True:
            self._submit_ready()
            self.watch(self.jobs)
            if not self.pending:
                self._started()  # the last starts, for the attempts each job took
                break
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=1.0)
            self._started()
            for ref in ready:
                self._collect(self.pending.pop(ref), ref)
            if time.monotonic() - last_check > 2:
                last_check = time.monotonic()
                self._drop_orphans()

    def _started(self) -> None:
        """Jobs a node has started since the last look (their first try, or a retry)."""
        import ray

        try:
            started = ray.get(self.board.poll.remote(), timeout=30)
        except ray.exceptions.RayError:  # its node died: Ray restarts it (counts start anew)
            return
        for key, node in started:
            job = self.sweep.jobs[key]
            job.attempts += 1
            if job.state == "queued":
                job.state, job.node = "running", node

    def interrupted(self) -> None:
        for job in self.pending.values():
            job.state, job.error = "not run", "interrupted"

    def cancel(self) -> None:
        import ray

        for ref in self.pending:
            ray.cancel(ref, force=True)

    def _submit_ready(self) -> None:
        for job in self.jobs:
            if job.state != "waiting":
                continue
            inputs = [self.sweep.jobs[k] for k in job.needs]
            if any(j.state in ("failed", "not run") for j in inputs):
                job.state, job.error = "not run", f"its input {_name(inputs)} did not run"
                continue
            if any(j.state != "done" for j in inputs):
                continue
            done = self._done(job)
            job.step.key = job.pipe.key_of(job.step, done)
            entry = self.sweep.cache / job.step.key / "stage.json"
            if self.use_cache and entry.is_file():
                record = json.loads(entry.read_text())
                self._finish(job, record, cached=True)
                continue
            self._submit(job, done)

    def _done(self, job: Job) -> dict[str, Any]:
        """Stand-ins for the steps ``job`` reads, holding their records (``key_of``, ``call``)."""
        variant, _ = job.uses[0]
        keys = self.sweep.step_keys[variant]
        return {sid: SimpleNamespace(record=self.records[keys[sid]])
                for sid in step_inputs(job.step)}

    def _submit(self, job: Job, done: dict[str, Any]) -> None:
        from .. import __version__

        source, values = job.pipe.call(job.step, done)
        keyed = job.step.keyed
        shipped = {k: self.blobs.ship(v) if _is_file_option(keyed.get(k), job.step.options[k])
                   else v for k, v in values.items()}
        spec = {"stage": job.step.name, "source": self.blobs.ship(source) if source else None,
                "values": shipped, "suffix": job.step.suffix, "device": job.device,
                "edgekit": __version__, "board": self.board, "key": job.plan_key}
        if job.device:
            cpus = self.host_cpus if job.device == "host" else 1
            options = {"num_cpus": cpus, "resources": {f"device:{job.device}": 1}}
        else:
            options = {"num_cpus": 1}
        ref = self.task.options(max_retries=2, retry_exceptions=False, **options).remote(spec)
        self.pending[ref] = job
        job.state = "queued"

    def _collect(self, job: Job, ref) -> None:
        import ray

        try:
            result = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            job.state, job.error = "not run", job.error or "cancelled"
            return
        except ray.exceptions.RayError as exc:  # its node or worker died, retries spent
            job.state = "not run"
            job.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            return
        job.node, job.where = result["node"], result["device"]
        if not result["ok"]:
            job.state, job.error, job.code = "failed", result["error"], result["code"]
            return
        self._finish(job, self._store(job, result), cached=False)

    def _finish(self, job: Job, record: dict, cached: bool) -> None:
        self.records[job.plan_key] = record
        job.state, job.cached = "done", cached
        job.seconds = record["seconds"]
        job.node = record.get("node", job.node)
        job.where = record.get("device", job.where)

    def _store(self, job: Job, result: dict) -> dict:
        """Write the job's output into the cache: whole, or not at all."""
        import hashlib

        from ..recipes.runner import stage_record

        cache, key = self.sweep.cache, job.step.key
        final = cache / key
        tmp = cache / f".part-{key[:16]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            name = f"out{job.step.suffix}"
            moved = {w: self.blobs.paths[b] for w, b in result["paths"].items()}
            moved[str(Path(result["work"]) / name)] = str(final / name)
            data = _relocate(result["output"], moved) if name.endswith(".json") else \
                result["output"]
            (tmp / name).write_bytes(data)
            if result["sidecar"] is not None:
                (tmp / f"{name}.json").write_bytes(_relocate(result["sidecar"], moved))
            job.step.argv = job.pipe.argv(job.step, self._done(job), final / name)
            record = stage_record(job.step, result["seconds"], final / name,
                                  hashlib.sha256(data).hexdigest(), len(data),
                                  result["hostname"], node=result["node"],
                                  device=result["device"])
            (tmp / "stage.json").write_text(json.dumps(record, indent=2) + "\n")
            if final.exists() and (final / "stage.json").is_file():  # another sweep made it
                return json.loads((final / "stage.json").read_text())
            if final.exists():  # an interrupted `edgekit run` left it incomplete
                shutil.rmtree(final)
            try:
                os.rename(tmp, final)
            except OSError:  # made meanwhile by another sweep
                return json.loads((final / "stage.json").read_text())
            return record
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _drop_orphans(self) -> None:
        """Jobs needing a device no alive node offers any more: cancelled, reported."""
        import ray

        offered = {k for k, v in ray.cluster_resources().items() if v > 0}
        for ref, job in list(self.pending.items()):
            if job.device and f"device:{job.device}" not in offered:
                ray.cancel(ref, force=True)
                del self.pending[ref]
                job.state = "not run"
                job.error = f"no node offers {job.device} any more (its node left the cluster)"

    def row(self, job: Job) -> dict:
        return {"id": job.name, "stage": job.step.name, "plan_key": job.plan_key,
                "key": job.step.key, "variants": [v for v, _ in job.uses],
                "device": job.device, "where": job.where, "node": job.node,
                "state": job.state, "cached": job.cached, "seconds": job.seconds,
                "attempts": job.attempts, "error": job.error, "code": job.code}


def _board():
    """A small actor the jobs tell when they start (the progress display's "running")."""
    import ray

    @ray.remote(num_cpus=0)
    class Board:
        def __init__(self):
            self.started: list = []

        def start(self, key: str, node: str) -> None:
            self.started.append((key, node))

        def poll(self) -> list:
            out, self.started = self.started, []
            return out

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()  # the driver's node, when it has one
    strategy = NodeAffinitySchedulingStrategy(here, soft=True) if here else "DEFAULT"
    return Board.options(max_restarts=-1, max_task_retries=-1,
                         scheduling_strategy=strategy).remote()


def _is_file_option(keyed: Any, value: Any) -> bool:
    """Whether an option names files (a dataset, a model, an earlier stage's output)."""
    first = keyed[0] if isinstance(keyed, list) and keyed else keyed
    return isinstance(first, tuple) or (isinstance(value, str) and value.startswith("@")) or (
        isinstance(value, list) and any(isinstance(v, str) and v.startswith("@") for v in value))


def _relocate(data: bytes, moved: dict[str, str]) -> bytes:
    """A JSON document with the worker's paths replaced by the driver's."""
    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return moved.get(v, v) if isinstance(v, str) else v

    try:
        doc = json.loads(data)
    except ValueError:
        return data
    return (json.dumps(walk(doc), indent=2) + "\n").encode()


def _name(jobs: list[Job]) -> str:
    bad = [j for j in jobs if j.state in ("failed", "not run")]
    return bad[0].name if bad else "?"


def _file_facts(path: Path, description: str) -> dict:
    from ..core.artifacts import sha256_of

    return {"path": str(path), "sha256": sha256_of(path), "description": description}


def _write_variant(sweep: Sweep, variant, folder: Path, driver: _Driver,
                   started: dt.datetime) -> dict:
    """The variant's own run folder (an ``edgekit run`` folder: report reads it)."""
    import yaml

    from ..core.artifacts import write_json_atomic, write_text_atomic
    from ..recipes.gates import evaluate_gates

    pipe, keys = variant.pipe, sweep.step_keys[variant.name]
    sub = folder / variant.name
    sub.mkdir()
    recipe = sub / "recipe.yaml"
    write_text_atomic(recipe, yaml.safe_dump(pipe.variant_doc, sort_keys=False))
    doc = pipe.document(sub, started, recipe)
    jobs = [sweep.jobs[keys[s.id]] for s in pipe.steps]
    for step, job in zip(pipe.steps, jobs):
        step.key = job.step.key
        step.record = driver.records.get(job.plan_key)
        if step.record is not None:
            doc["stages"].append(pipe._link(step, sub, bool(job.cached), job.seconds or 0.0))
    not_done = [j for j in jobs if j.state != "done"]
    if not_done:
        doc["status"] = "not run"
        doc["error"] = f"{not_done[0].name}: {not_done[0].error or not_done[0].state}"
    else:
        doc["gates"] = evaluate_gates(pipe.recipe, pipe.steps)
        doc["status"] = "gates failed" if any(not g["passed"] for g in doc["gates"]) \
            else "passed"
    doc["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    doc["wall_s"] = round(sum(j.seconds or 0 for j in jobs), 3)  # its jobs' own seconds
    write_json_atomic(sub / "run.json", doc)
    return {"name": variant.name, "values": variant.values, "status": doc["status"],
            "run_dir": str(sub), "gates": doc["gates"], "error": doc.get("error")}


def _counts(jobs) -> dict:
    jobs = list(jobs)
    return {"jobs": len(jobs), "ran": sum(j.state == "done" and not j.cached for j in jobs),
            "cached": sum(bool(j.cached) for j in jobs),
            "failed": sum(j.state == "failed" for j in jobs),
            "not_run": sum(j.state not in ("done", "failed") for j in jobs)}


def _status(doc: dict) -> str:
    if doc["counts"]["failed"] or doc["counts"]["not_run"]:
        return "incomplete"
    return "gates failed" if any(v["status"] == "gates failed" for v in doc["variants"]) \
        else "passed"


def _raise_for(doc: dict, folder: Path) -> None:
    bad = [j for j in doc["jobs"] if j["state"] in ("failed", "not run")]
    if bad:
        first = next((j for j in bad if j["state"] == "failed"), bad[0])
        cls = {2: BadInput, 3: EnvironmentProblem}.get(first["code"], EnvironmentProblem)
        raise cls(f"{len(bad)} of {len(doc['jobs'])} job(s) did not finish; {first['id']}: "
                  f"{first['error']}", hint=f"see {folder / 'run.json'}")
    failed = [v for v in doc["variants"] if v["status"] == "gates failed"]
    if failed:
        raise GateFailed(f"{len(failed)} variant(s) failed a gate: " + ", ".join(
            v["name"] for v in failed), hint=f"see {folder / 'run.json'}")
