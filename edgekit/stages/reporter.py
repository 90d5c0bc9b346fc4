"""How a running stage reports progress (no framework imported: the CLI's progress bars
subclass it before any stage is loaded)."""

from __future__ import annotations

from typing import Optional


class Reporter:
    """What a running stage tells whoever watches it. This one tells nobody; the CLI's draws
    progress bars and prints each finished epoch."""

    def progress(self, done: int, total: Optional[int], description: Optional[str] = None) -> None:
        """``done`` of ``total`` steps (total None: length unknown)."""

    def status(self, message: str) -> None:
        """What the stage is doing now, when it has no count of steps."""

    def epoch(self, row: dict) -> None:
        """One finished training epoch (loss, accuracy, validation, learning rate, seconds)."""


QUIET = Reporter()
