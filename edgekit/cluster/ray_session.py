"""Connecting to Ray: a local Ray started for one sweep (the embedded default), or an
existing cluster (``--address``/``RAY_ADDRESS``).

A local Ray is kept on this machine: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes Ray take
127.0.0.1 as the node's address, so its GCS, raylet and workers listen on loopback only (by
default Ray advertises the address that routes to the internet, even with
``--node-ip-address=127.0.0.1``). It uses token authentication with a fresh random token
held in the environment of its own processes (nothing is written to ``~/.ray``), and its
workers get a private temporary folder, removed when the sweep ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlsplit

from ..core.errors import BadInput, EnvironmentProblem

LOCAL_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


def address_of(address: Optional[str]) -> Optional[str]:
    """The cluster to use: ``address``, else ``RAY_ADDRESS``, else None (start a local Ray)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def _split(address: str):
    return urlsplit(address if "://" in address else f"ray-gcs://{address}")


def _on_loopback(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(socket.gethostbyname(_split(address).hostname)).is_loopback
    except (OSError, ValueError, TypeError):
        return False


def reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise EnvironmentProblem (exit 3) unless something listens at the address's port."""
    parts = _split(address)
    if parts.scheme not in ("ray", "ray-gcs") or not parts.hostname:
        raise BadInput(f"--address {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        port = parts.port or (10001 if parts.scheme == "ray" else 6379)
    except ValueError:
        raise BadInput(f"--address {address!r}: the port is not a number") from None
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise EnvironmentProblem(f"cannot reach the Ray cluster at {address} "
                                 f"({exc.strerror or exc})",
                                 hint="is `edgekit lab start --head` running there?") from None


@functools.lru_cache(maxsize=None)
def _token() -> str:
    """The token of this process's local Rays: RAY_AUTH_TOKEN, else one made once (Ray
    reads its authentication settings once per process)."""
    return os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(32)


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def ray_session(address: Optional[str] = None, devices=None,
                num_cpus: Optional[int] = None) -> Iterator[str]:
    """Ray connected for the block; yields where it runs ("local" or the address).

    Without an address, a local Ray starts with ``num_cpus`` (default: every core) and the
    resources of ``devices`` (lab devices this machine reaches; default: itself as host)."""
    from .lab import node_env, resources, this_machine

    address = address_of(address)
    if address:
        reachable(address)
        # a cluster on loopback is this machine's: Ray must not swap 127.0.0.1 for the
        # machine's outside address (the driver would look for its raylet there)
        env: dict[str, str] = LOCAL_ENV if _on_loopback(address) else {
            "RAY_USAGE_STATS_ENABLED": "0"}
        if os.environ.get("RAY_AUTH_TOKEN") and "RAY_AUTH_MODE" not in os.environ:
            env = {**env, "RAY_AUTH_MODE": "token"}  # as `edgekit lab start` sets it
    else:
        devices = devices if devices is not None else [this_machine()]
        tmp = Path(tempfile.mkdtemp(prefix="edgekit-ray-"))
        env = {**LOCAL_ENV, **node_env(devices), "TMPDIR": str(tmp),
               "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": _token()}
    # Ray's driver threads print cluster events ("(raylet) Raylet is terminated ...") on
    # stdout, which belongs to --json: they go to stderr while the session lasts
    with _environ(env), contextlib.redirect_stdout(sys.stderr):
        import logging

        import ray

        try:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING,
                         namespace="edgekit")
            else:
                # "local": a new Ray, never one already running on this machine
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                         resources=resources(devices), include_dashboard=False,
                         log_to_driver=False, logging_level=logging.WARNING,
                         namespace="edgekit", _temp_dir=str(tmp / "ray"))
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise EnvironmentProblem(f"cannot start Ray: {str(exc).splitlines()[0][:200]}"
                                     if not address else f"cannot join the Ray cluster at "
                                     f"{address}: {str(exc).splitlines()[0][:200]}") from None
        try:
            yield address or "local"
        finally:
            ray.shutdown()
            if not address:
                shutil.rmtree(tmp, ignore_errors=True)
