"""One error family and the exit codes of the command-line contract.

Library code raises these; only ``edgekit.cli`` turns them into a message and an exit code.
"""

from __future__ import annotations

import contextlib
from enum import IntEnum
from typing import Iterator


class ExitCode(IntEnum):
    OK = 0
    GATE_FAILED = 1  # a check crossed its threshold (compare, budget not met)
    BAD_INPUT = 2  # wrong path, corrupt file, unknown name, bad option
    ENVIRONMENT = 3  # missing runtime or package, device unreachable


class EdgekitError(Exception):
    """An error meant for the user: one clear line, no traceback."""

    code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class BadInput(EdgekitError):
    code = ExitCode.BAD_INPUT


class EnvironmentProblem(EdgekitError):
    code = ExitCode.ENVIRONMENT


class GateFailed(EdgekitError):
    code = ExitCode.GATE_FAILED


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its class name when empty), for one-line
    errors that quote a library's complaint."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else exc.__class__.__name__)[:limit]


@contextlib.contextmanager
def ctrl_c_stops() -> Iterator[None]:
    """Within the block, a Ctrl-C is noted before it raises KeyboardInterrupt as usual; if
    the block then fails with another exception, or finishes because a library swallowed the
    interrupt, KeyboardInterrupt is raised. Only the main thread can install the handler;
    elsewhere, and when SIGINT is ignored, the block runs as it is."""
    import signal
    import threading

    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    noted: list[int] = []

    def handler(signum, frame):
        noted.append(signum)
        previous(signum, frame)  # Python's default (or a caller's handler) raises

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    except Exception:
        if noted:
            raise KeyboardInterrupt from None
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    if noted:
        raise KeyboardInterrupt
