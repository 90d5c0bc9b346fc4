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
