"""``edgekit lab start | status | stop``: Ray nodes that declare the devices they reach.

``start`` wraps ``ray start`` (the Ray CLI installed beside edgekit): the node offers one unit
of ``device:CATALOG`` per device of its lab file that answers its health check, and its
raylet's environment carries those devices' connection details to the jobs it runs. A head
started by edgekit uses Ray's token authentication: the token comes from ``RAY_AUTH_TOKEN``,
else a new one is made; every other node and driver needs the same ``RAY_AUTH_TOKEN``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Optional

from ..core.errors import BadInput, EnvironmentProblem
from .lab import LabDevice, check, load_lab, node_env, resources, this_machine
from .ray_session import LOCAL_ENV, reachable


def ray_cli() -> str:
    """The ``ray`` command of the Python that runs edgekit."""
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if not found:
        raise EnvironmentProblem("Ray is not installed", hint='pip install "edgekit[cluster]"')
    return found


def declared(lab: Optional[Path], host_device: bool,
             timeout_s: float = 20) -> tuple[list[LabDevice], list[str]]:
    """The devices a node will offer (those of ``lab`` that answer now, and this machine as
    ``host`` when asked), and one line for each device left out."""
    devices = [this_machine()] if host_device else []
    skipped = []
    listed = load_lab(lab) if lab else []
    for d in listed:
        try:
            check(d, timeout_s)
        except EnvironmentProblem as exc:
            skipped.append(str(exc))
            continue
        devices.append(d)
    named = {d.serial for d in listed if d.serial}
    try:
        attached = attached_adb_devices(timeout_s)
    except EnvironmentProblem as exc:
        attached = {}
        skipped.append(str(exc))
    for serial, state in attached.items():
        if serial not in named:  # its catalog device is unknown: the lab file must say it
            skipped.append(f"adb device {serial} ({state}) is attached but not in the lab "
                           "file: add it there with `serial:` and the catalog device it is")
    return devices, skipped


def attached_adb_devices(timeout_s: float = 20) -> dict[str, str]:
    """``{serial: state}`` of what ``adb devices`` lists (empty without adb)."""
    adb = shutil.which("adb")
    if adb is None:
        return {}
    try:
        proc = subprocess.run([adb, "devices"], capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"adb devices did not answer in {timeout_s:g} s") from None
    if proc.returncode != 0:
        raise EnvironmentProblem(f"adb devices failed: {proc.stderr.strip()[-300:]}")
    rows = (line.split("\t") for line in proc.stdout.splitlines() if "\t" in line)
    return {r[0].strip(): r[1].strip() for r in rows if len(r) == 2}


def start(*, head: bool, address: Optional[str] = None, port: int = 6379,
          lab: Optional[Path] = None, host_device: bool = False, cpus: Optional[int] = None,
          loopback: bool = False) -> dict:
    """Start a Ray node on this machine declaring its devices; returns what it declared."""
    if head == bool(address):
        raise BadInput("give --head (start a cluster) or --address HEAD:PORT (join one)")
    if loopback and not head:
        raise BadInput("--loopback keeps a one-machine cluster on 127.0.0.1; other nodes "
                       "cannot join it (Ray refuses multi-node clusters in that mode)")
    if address:
        reachable(address)
    devices, skipped = declared(lab, host_device)
    token = os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)
    env = {**os.environ, **node_env(devices), "RAY_AUTH_MODE": "token",
           "RAY_AUTH_TOKEN": token, "RAY_USAGE_STATS_ENABLED": "0",
           **(LOCAL_ENV if loopback else {})}
    argv = [ray_cli(), "start", "--disable-usage-stats", "--include-dashboard=false",
            f"--resources={json.dumps(resources(devices))}"]
    argv += ["--head", f"--port={port}"] if head else [f"--address={address}"]
    if loopback:
        argv.append("--node-ip-address=127.0.0.1")
    if cpus is not None:
        argv.append(f"--num-cpus={cpus}")
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        raise EnvironmentProblem(f"ray start failed: {(lines or ['(no output)'])[-1][:300]}")
    return {"schema": "edgekit.lab-node/1", "head": head,
            "address": f"{'127.0.0.1' if loopback else socket.getfqdn()}:{port}" if head
            else address, "devices": [d.model_dump(mode="json") for d in devices],
            "resources": resources(devices), "skipped": skipped,
            "token_env": None if os.environ.get("RAY_AUTH_TOKEN") else token}


def status(address: Optional[str] = None) -> dict:
    """The cluster's nodes, their devices and how many of each kind are free now."""
    from .executor import cluster_nodes
    from .ray_session import address_of, ray_session

    address = address_of(address) or _local_head()
    with ray_session(address):
        import ray

        nodes = cluster_nodes()
        free = ray.available_resources()
        total = ray.cluster_resources()
    kinds = sorted({d for n in nodes for d in n["devices"]})
    return {"schema": "edgekit.lab-status/1", "address": address, "nodes": nodes,
            "devices": [{"device": k, "total": total.get(f"device:{k}", 0),
                         "free": free.get(f"device:{k}", 0)} for k in kinds],
            "cpus": {"total": total.get("CPU", 0), "free": free.get("CPU", 0)}}


def _local_head() -> str:
    """The address of the Ray cluster this machine started last (Ray records it)."""
    import tempfile

    for root in (os.environ.get("RAY_TMPDIR"), tempfile.gettempdir(), "/tmp"):
        f = Path(root or "/nonexistent") / "ray" / "ray_current_cluster"
        if f.is_file() and f.read_text().strip():
            return f.read_text().strip()
    raise BadInput("no Ray cluster address: give --address HOST:PORT or set RAY_ADDRESS "
                   "(none was started on this machine)")


def stop() -> None:
    """Stop every Ray process of this machine (``ray stop``)."""
    proc = subprocess.run([ray_cli(), "stop"], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise EnvironmentProblem(f"ray stop failed: {proc.stderr.strip()[-300:]}")
