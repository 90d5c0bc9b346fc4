"""The stages of edgekit, each one options model, one function and its facts
(``edgekit.stages.base.Stage``). ``get(name)`` imports only the stage asked for."""

from __future__ import annotations

from ..core.registry import STAGES


def get(name: str):
    """The Stage called ``name``; an unknown name is a BadInput listing the known ones."""
    return STAGES.resolve(name)
