"""edgekit: fit MobileNet/EfficientNet classifiers to edge devices, compress, export, profile.

The stages as Python functions (imported on first use, so ``import edgekit`` stays instant):
``build``, ``scale``, ``prune``, ``finetune``, ``quantize``, ``export``, ``profile``,
``inspect``, ``predict``, ``compare``, ``report``, ``calibrate`` and ``run`` (a recipe); see
``edgekit.api``. Errors: ``EdgekitError`` and its subclasses
``BadInput``, ``EnvironmentProblem`` and ``GateFailed``.
"""

from .core.errors import BadInput, EdgekitError, EnvironmentProblem, GateFailed

__version__ = "0.1.0"

_API = ("build", "scale", "prune", "finetune", "quantize", "export", "profile", "inspect",
        "predict", "compare", "report", "calibrate", "run")
__all__ = ["EdgekitError", "BadInput", "EnvironmentProblem", "GateFailed", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
