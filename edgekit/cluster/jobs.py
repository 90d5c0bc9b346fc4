"""One job of a sweep as a Ray task, and the files it travels with.

Files go through Ray's object store, not a shared folder: a device lab has no shared file
system (a Pi, a Jetson and a laptop with phones attached), and the models and datasets a
sweep moves are a few MB to a few hundred MB. The driver puts each input file once (a model
with its sidecar, a dataset folder as a tar); each node unpacks it once, by content, into
its own temporary folder. A job runs the stage in a private folder and returns the output's
bytes: only the driver writes the stage cache and the run folder, each entry whole or not at
all, so a node that dies mid-job leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import platform
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

BLOB = "__edgekit_blob__"


class Blobs:
    """Driver side: local paths put into the object store once each."""

    def __init__(self):
        self._put: dict[tuple, dict] = {}
        self.paths: dict[str, str] = {}  # blob id -> the driver's path

    def ship(self, value: Any) -> Any:
        """``value`` (a path, or a list of them) as blob references; others as they are."""
        if isinstance(value, list):
            return [self.ship(v) for v in value]
        if not isinstance(value, (str, Path)) or not Path(value).exists():
            return value  # a named dataset, a number, a name
        path = Path(value).resolve()
        st = path.stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        if memo not in self._put:
            import ray

            payload = _pack(path)
            blob_id = hashlib.sha256(payload["data"] + (payload["sidecar"] or b"")).hexdigest()
            self._put[memo] = {BLOB: blob_id, "name": path.name, "folder": path.is_dir(),
                               "ref": ray.put(payload)}
            self.paths[blob_id] = str(path)
        return self._put[memo]


def _pack(path: Path) -> dict[str, Optional[bytes]]:
    if path.is_dir():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in sorted(path.rglob("*")):
                tar.add(f, arcname=str(f.relative_to(path)), recursive=False)
        return {"data": buf.getvalue(), "sidecar": None}
    side = path.with_name(path.name + ".json")
    return {"data": path.read_bytes(), "sidecar": side.read_bytes() if side.is_file() else None}


def _unpack(blob: dict, seen: dict[str, str]) -> str:
    """Worker side: the blob's path on this node (unpacked once per node, by content)."""
    import ray

    root = Path(tempfile.gettempdir()) / f"edgekit-blobs-{os.getuid()}"
    final = root / blob[BLOB]
    path = final / blob["name"]
    if not (final / ".complete").exists():
        payload = ray.get(blob["ref"])
        tmp = Path(tempfile.mkdtemp(prefix=".part-", dir=_mkdir(root)))
        target = tmp / blob["name"]
        if blob["folder"]:
            target.mkdir()
            with tarfile.open(fileobj=io.BytesIO(payload["data"])) as tar:
                tar.extractall(target, filter="data")
        else:
            target.write_bytes(payload["data"])
            if payload["sidecar"] is not None:
                target.with_name(target.name + ".json").write_bytes(payload["sidecar"])
        (tmp / ".complete").touch()
        try:
            os.rename(tmp, final)
        except OSError:  # another job on this node unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    seen[str(path)] = blob[BLOB]
    return str(path)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _local(value: Any, seen: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_local(v, seen) for v in value]
    if isinstance(value, dict) and BLOB in value:
        return _unpack(value, seen)
    return value


def same_version(driver: str) -> None:
    """Refuse (exit 3) a job from a driver running another edgekit than this node."""
    from .. import __version__
    from ..core.errors import EnvironmentProblem

    if driver != __version__:
        raise EnvironmentProblem(f"this node runs edgekit {__version__}, the driver {driver}: "
                                 "install the same version on both")


def run_job(spec: dict) -> dict:
    """Run one stage on this node (the body of the Ray task). Returns the output's bytes, or
    the EdgekitError that stopped it, with where it ran."""
    import ray

    from .. import __version__
    from ..core.errors import EdgekitError
    from ..stages import get as get_stage
    from ..stages.base import QUIET
    from .lab import check, claim, connection

    where = {"node": ray.get_runtime_context().get_node_id(), "hostname": platform.node(),
             "edgekit": __version__, "device": None}
    spec["board"].start.remote(spec["key"], where["node"])  # first: a retry counts too
    work = Path(tempfile.mkdtemp(prefix="edgekit-job-"))
    seen: dict[str, str] = {}
    try:
        same_version(spec["edgekit"])
        source = _local(spec["source"], seen)
        values = {k: _local(v, seen) for k, v in spec["values"].items()}
        stage = get_stage(spec["stage"])
        output = work / f"out{spec['suffix']}"
        with claim(spec["device"]) if spec["device"] else contextlib.nullcontext() as device:
            if device is not None:
                where["device"] = device.name
                if not any(values.get(k) for k in ("host", "serial", "runner")):
                    values.update({k: v for k, v in connection(device).items() if v})
                check(device)
            options = stage.validate(values)
            t0 = time.perf_counter()
            stage.run(Path(source) if source else None, options, output, force=False,
                      reporter=QUIET)
            seconds = time.perf_counter() - t0
        if not output.exists():
            raise EdgekitError(f"edgekit {spec['stage']} wrote no output")
        side = output.with_name(output.name + ".json")
        return {**where, "ok": True, "seconds": round(seconds, 3), "paths": seen,
                "output": output.read_bytes(), "work": str(work),
                "sidecar": side.read_bytes() if side.is_file() else None}
    except EdgekitError as exc:
        return {**where, "ok": False, "error": str(exc), "code": int(exc.code)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
