"""A device lab: the devices each Ray node can reach, declared as Ray resources.

``lab.yaml`` names each physical device, the catalog device it is, and how it is reached:
``host`` (SSH), ``serial`` (adb), or neither (this machine itself, or the Arm64 emulator: the
catalog device's own runner). A node that declares devices offers one unit of the resource
``device:CATALOG`` per physical device (two Raspberry Pi 4s: ``device:raspberry-pi-4: 2``), so
Ray never gives a device two measurements at once. The connection details stay on the node
(in the environment its raylet hands to its workers, ``EDGEKIT_LAB_DEVICES``): identity files
and adb serials are that machine's, so a job holding a unit of ``device:X`` takes a free
device of that kind *on its node* (a file lock per device) and connects with its details.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..core.errors import BadInput, EnvironmentProblem

LAB_SCHEMA = "edgekit.lab/1"
ENV = "EDGEKIT_LAB_DEVICES"  # a node's devices (JSON), read by the jobs on that node
RESOURCE = "device:"


class LabDevice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    device: str  # the catalog device it is
    host: Optional[str] = None  # user@host: reached over SSH
    port: Optional[int] = Field(None, gt=0, lt=65536)
    identity: Optional[str] = None
    ssh_option: list[str] = Field(default_factory=list)
    python: str = "python3"  # Python on the device (see `edgekit lab prepare`)
    serial: Optional[str] = None  # adb serial: an Android device

    @model_validator(mode="after")
    def _one_way(self) -> "LabDevice":
        if self.host and self.serial:
            raise ValueError(f"{self.name}: give host (SSH) or serial (adb), not both")
        return self


class LabFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: Literal["edgekit.lab/1"] = Field(LAB_SCHEMA, alias="schema")
    devices: list[LabDevice] = Field(default_factory=list)


def load_lab(path: Path) -> list[LabDevice]:
    """The devices of a lab file, checked: unique names, known catalog devices, and each
    device's way of being reached fits its catalog entry."""
    from ..core.devices import load_device
    from ..core.yamlfile import load_validated

    lab, _ = load_validated(Path(path), LabFile, "a lab file")
    seen: set[str] = set()
    for d in lab.devices:
        if d.name in seen:
            raise BadInput(f"{path}: device name {d.name!r} is used twice")
        seen.add(d.name)
        try:
            entry = load_device(d.device)
        except BadInput as exc:
            raise BadInput(f"{path}: {d.name}: {exc}") from None
        if not (d.host or d.serial) and entry.runner in ("ssh", "adb"):
            how = "host: user@host" if entry.runner == "ssh" else "serial: SERIAL"
            raise BadInput(f"{path}: {d.name}: a {d.device} is reached over {entry.runner}; "
                           f"give {how}")
    return lab.devices


def this_machine() -> LabDevice:
    """The machine a local Ray runs on, as the catalog's ``host``."""
    return LabDevice(name="host", device="host")


def resources(devices: list[LabDevice]) -> dict[str, float]:
    """The Ray resources a node with ``devices`` offers: one unit per physical device."""
    out: dict[str, float] = {}
    for d in devices:
        out[RESOURCE + d.device] = out.get(RESOURCE + d.device, 0) + 1
    return out


def node_env(devices: list[LabDevice]) -> dict[str, str]:
    """Environment for a node's raylet: its devices, for the jobs that run there."""
    return {ENV: json.dumps([d.model_dump(mode="json") for d in devices])}


def node_devices() -> list[LabDevice]:
    """The devices the node this process runs on declared (empty when it declared none)."""
    raw = os.environ.get(ENV)
    return [LabDevice.model_validate(d) for d in json.loads(raw)] if raw else []


@contextlib.contextmanager
def claim(device: str, wait_s: float = 600) -> Iterator[LabDevice]:
    """A free physical ``device`` (catalog name) of this node, held until the block ends.

    Ray already limits a node to as many ``device:X`` jobs as it has devices of kind X; the
    lock picks which one, and also keeps two Ray sessions on one machine off one device."""
    import fcntl

    mine = [d for d in node_devices() if d.device == device]
    if not mine:
        raise EnvironmentProblem(f"this node declares no {device} (its devices: "
                                 f"{', '.join(d.name for d in node_devices()) or 'none'})")
    folder = Path(tempfile.gettempdir()) / f"edgekit-lab-locks-{os.getuid()}"
    folder.mkdir(exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for d in mine:
            fh = open(folder / f"{d.name}.lock", "w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            try:
                yield d
            finally:
                fh.close()  # releases the lock
            return
        if time.monotonic() > deadline:
            raise EnvironmentProblem(f"every {device} of this node stayed busy for "
                                     f"{wait_s:.0f} s")
        time.sleep(0.2)


def connection(d: LabDevice) -> dict[str, Any]:
    """The profile options that reach ``d`` (what a recipe would say with --host/--serial)."""
    if d.host:
        return {"host": d.host, "port": d.port, "identity": d.identity,
                "ssh_option": list(d.ssh_option), "remote_python": d.python}
    if d.serial:
        return {"serial": d.serial}
    return {}


def runner_for(d: LabDevice, timeout_s: Optional[float] = None):
    """The Runner that reaches ``d`` (ssh, adb, or its catalog entry's own)."""
    from ..core.devices import load_device
    from ..runtime.selection import make_runner, runner_options

    opts = {"timeout": timeout_s, **connection(d)}
    if d.identity:
        opts["identity"] = Path(d.identity).expanduser()
    return make_runner(runner_options(**opts), load_device(d.device))


def check(d: LabDevice, timeout_s: Optional[float] = None) -> None:
    """Raise EnvironmentProblem, naming the device, unless it answers now."""
    runner = runner_for(d, timeout_s)
    try:
        runner.check()
    except EnvironmentProblem as exc:
        raise EnvironmentProblem(f"device {d.name} ({d.device}) failed its health check: "
                                 f"{exc.message}", hint=exc.hint) from None
    finally:
        close = getattr(runner, "close", None)
        if close:
            close()


def resource_devices(resources: dict[str, float]) -> dict[str, float]:
    """``{catalog device: units}`` from a Ray resources mapping."""
    return {k[len(RESOURCE):]: v for k, v in resources.items()
            if k.startswith(RESOURCE) and re.fullmatch(r"[A-Za-z0-9_.-]+", k[len(RESOURCE):])}
