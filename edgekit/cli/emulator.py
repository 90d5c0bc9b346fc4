"""``edgekit emulator setup | status | remove``: the cached Arm64 user-space (qemu)."""

from __future__ import annotations

from typing import Optional

import typer

from .lazy import LazyGroup
from ._common import JSON_OPT, console, emit_json, status as spinner

app = typer.Typer(cls=LazyGroup, rich_markup_mode=None, help="Build, inspect or delete the Arm64 emulator (a Debian user-space run "
                       "by qemu) that `profile --device emulator-arm64` uses for accuracy.",
                  no_args_is_help=True)


@app.command("setup")
def setup(
    mirror: Optional[str] = typer.Option(None, help="Debian mirror URL (default: the one in "
                                         "this machine's apt sources)."),
    force: bool = typer.Option(False, "--force", help="Rebuild even if one is cached."),
    json_out: bool = JSON_OPT,
) -> None:
    """Build and cache the Arm64 user-space: Debian bookworm (debootstrap), Python 3.11, numpy
    and ai-edge-litert for aarch64. Needs root, qemu-user-static and debootstrap; about a
    minute and ~400 MB the first time, instant when cached."""
    from ..runtime import qemu as emulator

    with spinner("setting up the Arm64 emulator", json_out) as update:
        doc = emulator.setup(mirror, force, step=update)
    if json_out:
        emit_json(doc)
        return
    how = "already cached" if doc["cached"] else f"built in {doc['setup_s']:.0f} s"
    console.print(f"Arm64 emulator ready ({how}): {doc['path']}, {doc['size_mb']} MB, "
                  f"numpy {doc['numpy']}, ai-edge-litert {doc['ai_edge_litert']}")


@app.command("status")
def status(json_out: bool = JSON_OPT) -> None:
    """Say whether the emulator is set up, where, and with which runtime versions."""
    from ..runtime import qemu as emulator

    doc = emulator.status()
    if json_out:
        emit_json(doc)
    elif doc["ready"]:
        console.print(f"ready: {doc['path']} ({doc['size_mb']} MB, Debian {doc['suite']}, numpy "
                      f"{doc['numpy']}, ai-edge-litert {doc['ai_edge_litert']}, built "
                      f"{doc['created']} in {doc['setup_s']:.0f} s)")
    else:
        console.print(f"not set up (would live in {doc['path']}); run `edgekit emulator setup`")


@app.command("remove")
def remove(json_out: bool = JSON_OPT) -> None:
    """Delete the cached user-space."""
    from ..runtime import qemu as emulator

    removed = emulator.remove()
    if json_out:
        emit_json({"removed": removed, "path": str(emulator.rootfs())})
    else:
        console.print(f"removed {emulator.rootfs()}" if removed else "nothing to remove")
