"""Timing zoo specs on a device lab over Ray: ``scale --measure`` and ``calibrate`` given
``--address`` or ``--lab``.

The measurement is ``estimate.timing.measure_specs``'s, spread out: each spec is converted by a
CPU task on any node, then timed in ``rounds`` passes, each timing a task holding one unit of
``device:X`` (so every physical device of that kind times models at the same time as the
others, and each device one model at a time, never two sweeps' at once). A model's latency is
the lowest of its per-round medians, as on one device; its rounds may land on different devices
of the kind, and its row names each one (``measured_on``).
"""

from __future__ import annotations

import contextlib
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.errors import BadInput, EdgekitError, EnvironmentProblem


class LabTimer:
    """Times specs on every ``device`` of a Ray cluster (``address``) or of a lab file through
    a Ray started here (``lab``), for as long as the ``with`` block lasts (one Ray session for
    every ``measure``)."""

    def __init__(self, device: str, threads: int, *, address: Optional[str] = None,
                 lab: Optional[Path] = None, timeout_s: Optional[float] = None):
        from ..core.devices import load_device
        from .lab import load_lab, this_machine

        runner = load_device(device).runner
        if runner in ("adb", "emulator"):
            raise BadInput(f"timing '{device}' on a lab needs a runner that times each model "
                           f"in rounds through the harness (local or ssh), not its {runner} "
                           "runner")
        self.device, self.threads, self.timeout_s = device, threads, timeout_s
        self.address = address
        self.devices = [this_machine(), *(load_lab(lab) if lab else [])]
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> "LabTimer":
        from .executor import check_devices, cluster_nodes
        from .ray_session import ray_session

        with self._stack as stack:
            self.where = stack.enter_context(ray_session(self.address, self.devices))
            cpus = check_devices({self.device: 1}, cluster_nodes(), "timing models")
            self._tasks = _Tasks(self.device, cpus if self.device == "host" else 1,
                                 self.threads, self.timeout_s)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def measure(self, specs: list, precision: str,
                progress: Callable[[int, int], None] | None = None,
                rounds: int = 2) -> list[dict[str, Any]]:
        """``measure_specs`` rows for ``specs``, each also naming the devices that timed it."""
        tasks = self._tasks
        try:
            sizes, timings = tasks.submit(specs, precision, rounds)
            results = tasks.gather(sizes + [t for r in timings for t in r], progress)
        except BaseException:
            if self.where != "local":  # a cluster outlives this process: stop what it runs
                tasks.cancel()
            raise
        return [_row(spec, precision, self.threads, results[size],
                     [results[r[i]] for r in timings])
                for i, (spec, size) in enumerate(zip(specs, sizes))]


class _Tasks:
    """The conversion and timing tasks of one measurement, and their results."""

    def __init__(self, device: str, cpus: int, threads: int, timeout_s: Optional[float]):
        import ray

        from .. import __version__

        self.device, self.threads, self.timeout_s = device, threads, timeout_s
        self.version = __version__
        self.convert = ray.remote(_convert).options(num_cpus=1, num_returns=2, max_retries=2)
        self.time = ray.remote(_time).options(num_cpus=cpus, max_retries=2,
                                              resources={f"device:{device}": 1})
        self.pending: list = []

    def submit(self, specs: list, precision: str, rounds: int):
        """Object refs: each model's size, and each round's timings (a list per round)."""
        converted = [self.convert.remote(spec, precision, self.version) for spec in specs]
        timings = [[self.time.remote(model, self.device, list(spec.input_shape), self.threads,
                                     self.timeout_s, self.version)
                    for spec, (_, model) in zip(specs, converted)] for _ in range(rounds)]
        return [size for size, _ in converted], timings

    def gather(self, refs: list, progress) -> dict:
        """Every result by its ref; the first failure stops the measurement, as one device
        would (a lab device that fails its health check is named, exit 3)."""
        import ray

        self.pending, results = list(refs), {}
        while self.pending:
            ready, self.pending = ray.wait(self.pending, num_returns=1, timeout=1.0)
            for ref in ready:
                results[ref] = _result(ref)
            if ready and progress:
                progress(len(results), len(refs))
        return results

    def cancel(self) -> None:
        import ray

        for ref in self.pending:
            ray.cancel(ref, force=True)


def _result(ref) -> Any:
    import ray

    try:
        out = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the conversion raised
        if isinstance(exc.cause, EdgekitError):
            raise exc.cause from None
        raise EdgekitError(f"a conversion failed on the cluster: "
                           f"{str(exc.cause).strip().splitlines()[-1][:300]}") from None
    except ray.exceptions.RayError as exc:  # its node or worker died, retries spent
        raise EnvironmentProblem(f"a timing did not finish: {type(exc).__name__}: "
                                 f"{str(exc).strip().splitlines()[0][:200]}") from None
    if isinstance(out, dict) and not out["ok"]:
        cls = {2: BadInput}.get(out["code"], EnvironmentProblem)
        raise cls(f"{out['device'] or out['hostname']}: {out['error']}")
    return out


def _row(spec, precision: str, threads: int, size: int, rounds: list[dict]) -> dict[str, Any]:
    best = min(rounds, key=lambda t: t["median_ms"])
    timing = {k: v for k, v in best.items() if k not in ("ok", "node", "hostname", "device")}
    return {"spec": spec, "precision": precision, "threads": threads, "size_bytes": size,
            **timing, "round_medians_ms": [t["median_ms"] for t in rounds],
            "measured_on": [t["device"] for t in rounds]}


def _convert(spec, precision: str, version: str) -> tuple[int, bytes]:
    """Ray task: the spec as .tflite bytes (and their size, for the driver)."""
    from ..estimate.timing import convert_spec
    from ..models.load import quiet_tensorflow
    from .jobs import same_version

    same_version(version)
    quiet_tensorflow()
    with tempfile.TemporaryDirectory(prefix="edgekit-conv-") as tmp:
        data = convert_spec(spec, precision, Path(tmp) / "model.tflite").read_bytes()
    return len(data), data


def _time(model: bytes, device: str, input_shape: list[int], threads: int,
          timeout_s: Optional[float], version: str) -> dict[str, Any]:
    """Ray task: time one model on a free ``device`` of this node, through its runner."""
    import ray

    from ..estimate.timing import time_tflite
    from .jobs import same_version
    from .lab import check, claim, runner_for

    where = {"node": ray.get_runtime_context().get_node_id(), "hostname": platform.node(),
             "device": None}
    try:
        same_version(version)
        with claim(device) as d, tempfile.TemporaryDirectory(prefix="edgekit-lat-") as tmp:
            where["device"] = d.name
            check(d, timeout_s)
            path = Path(tmp) / "model.tflite"
            path.write_bytes(model)
            with runner_for(d, timeout_s) as runner:
                if not runner.latency_meaningful:
                    raise BadInput(f"the {runner.name} runner's timings are not the device's "
                                   f"({runner.latency_note})")
                timed = time_tflite(path, runner, input_shape, threads)
        return {**where, "ok": True, **timed}
    except EdgekitError as exc:
        return {**where, "ok": False, "error": str(exc), "code": int(exc.code)}
