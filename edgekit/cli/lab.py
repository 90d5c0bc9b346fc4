"""``edgekit lab``: Ray nodes of a device lab (start, status, stop)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._common import JSON_OPT, console, emit_json
from .lazy import SETTINGS

app = typer.Typer(help="Ray nodes of a device lab: each declares the devices it reaches, for "
                  "edgekit sweep.", no_args_is_help=True, context_settings=SETTINGS)

LAB_HELP = ("Lab file (lab.yaml) of the devices this machine reaches: name, catalog device, "
            "and host/port/identity (SSH) or serial (adb).")


@app.command("start")
def start(
    head: bool = typer.Option(False, "--head", help="Start a new cluster with this machine "
                              "as its head."),
    address: Optional[str] = typer.Option(None, "--address", help="Join the cluster whose "
                                          "head is HOST:PORT."),
    port: int = typer.Option(6379, "--port", min=1, max=65535, help="The head's port."),
    lab: Optional[Path] = typer.Option(None, "--lab", help=LAB_HELP),
    host_device: bool = typer.Option(False, "--host-device", help="Also offer this machine "
                                     "itself as the catalog device host (for a driver on this "
                                     "machine)."),
    cpus: Optional[int] = typer.Option(None, "--cpus", min=0, help="CPUs this node gives to "
                                       "jobs (default: every core)."),
    loopback: bool = typer.Option(False, "--loopback", help="Keep a one-machine cluster on "
                                  "127.0.0.1 (no other node can join)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Start a Ray node (ray start) declaring the devices it reaches as Ray resources; devices
    that fail their health check are left out and listed."""
    from ..cluster.nodes import start as start_node

    doc = start_node(head=head, address=address, port=port, lab=lab, host_device=host_device,
                     cpus=cpus, loopback=loopback)
    if json_out:
        return emit_json(doc)
    offered = ", ".join(f"{k} x{v:g}" for k, v in doc["resources"].items()) or "no devices"
    console.print(f"{'head' if head else 'node'} started ({doc['address']}): {offered}")
    for line in doc["skipped"]:
        console.print(f"[yellow]left out[/] {line}", soft_wrap=True)
    if doc["token_env"]:
        console.print("other nodes and drivers need this token in their environment:\n"
                      f"  export RAY_AUTH_TOKEN={doc['token_env']}", highlight=False)


@app.command("status")
def status(
    address: Optional[str] = typer.Option(None, "--address", help="HOST:PORT of the head "
                                          "(default: RAY_ADDRESS, else the cluster started "
                                          "on this machine)."),
    json_out: bool = JSON_OPT,
) -> None:
    """The lab's nodes, the devices each offers, and which are busy now."""
    from ..cluster.nodes import status as lab_status

    doc = lab_status(address)
    if json_out:
        return emit_json(doc)
    from rich.table import Table

    table = Table(title=f"lab at {doc['address']}", title_justify="left")
    for col in ("node", "host", "address", "CPUs", "devices"):
        table.add_column(col)
    for n in doc["nodes"]:
        table.add_row(n["node"][:8], n["hostname"], n["address"], f"{n['cpus']:g}",
                      ", ".join(f"{k} x{v:g}" for k, v in n["devices"].items()) or "-")
    console.print(table)
    for d in doc["devices"]:
        busy = d["total"] - d["free"]
        console.print(f"  {d['device']}: {busy:g} busy, {d['free']:g} free")
    console.print(f"  CPUs: {doc['cpus']['free']:g} of {doc['cpus']['total']:g} free")


@app.command("stop")
def stop() -> None:
    """Stop this machine's Ray node(s) (ray stop)."""
    from ..cluster.nodes import stop as stop_nodes

    stop_nodes()
    console.print("stopped")


@app.command("prepare")
def prepare(
    device: Optional[str] = typer.Argument(None, help="Name of the device in --lab."),
    lab: Optional[Path] = typer.Option(None, "--lab", help=LAB_HELP),
    host: Optional[str] = typer.Option(None, "--host", help="user@host of the device, "
                                       "instead of a lab file."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="SSH port."),
    identity: Optional[Path] = typer.Option(None, "--identity", help="SSH private key."),
    ssh_option: list[str] = typer.Option([], "--ssh-option", help="Extra ssh -o Key=Value "
                                         "(repeatable)."),
    python: str = typer.Option("python3", "--python", help="The device's own Python."),
    wheels: Optional[Path] = typer.Option(None, "--wheels", help="Folder of the wheels to "
                                          "install (default: download them here for the "
                                          "device's Python and machine, once)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Give a Linux device reached over SSH what edgekit's harness needs (numpy and
    ai-edge-litert), from wheels this machine downloads, unpacked into ~/.edgekit on the device:
    no internet and no pip needed there."""
    from ..cluster.lab import load_lab
    from ..cluster.prepare import prepare as provision
    from ..core.errors import BadInput
    from ..runtime.ssh import SSHRunner

    if lab is not None:
        if device is None or host is not None:
            raise BadInput("with --lab, name the device to prepare (and no --host)")
        found = [d for d in load_lab(lab) if d.name == device]
        if not found or not found[0].host:
            raise BadInput(f"{lab}: no device {device!r} reached over SSH (host:)")
        d = found[0]
        host, port, ssh_option = d.host, d.port, list(d.ssh_option)
        identity = Path(d.identity).expanduser() if d.identity else None
    elif host is None:
        raise BadInput("give --lab lab.yaml and the device's name, or --host user@host")
    runner = SSHRunner(host, port=port, identity=identity, options=ssh_option)
    with console.status("preparing") as shown:
        doc = provision(runner, wheels=wheels, python=python,
                        status=lambda m: None if json_out else shown.update(m))
    if json_out:
        return emit_json(doc)
    console.print(f"{doc['host']}: Python {doc['version']} on {doc['machine']}, installed "
                  + ", ".join(f"{k} {v}" for k, v in doc["installed"].items())
                  + f" from {len(doc['wheels'])} wheel(s)")
    console.print(f"use it with: python: {doc['python']}   (lab.yaml)   or   --remote-python "
                  f"{doc['python']}", highlight=False, soft_wrap=True)


@app.command("wheels")
def wheels_cmd(
    python_version: str = typer.Option(..., "--python-version", help="The device's Python, "
                                       "e.g. 3.11."),
    machine: str = typer.Option(..., "--machine", help="aarch64 or x86_64."),
    glibc: Optional[str] = typer.Option(None, "--glibc", help="The device's glibc, e.g. "
                                        "2.36 (default: 2.17, the oldest wheels)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Download the wheels `lab prepare` installs for a device's Python and machine into its
    cache, ahead of time (e.g. before going offline)."""
    from ..cluster.prepare import download, wheel_dir

    files = download(python_version, machine, glibc)
    doc = {"schema": "edgekit.lab-wheels/1",
           "folder": str(wheel_dir(python_version, machine, glibc)),
           "wheels": [f.name for f in files]}
    if json_out:
        return emit_json(doc)
    console.print(f"{len(files)} wheel(s) in {doc['folder']}")
