"""The model zoo: architecture as data (spec.py, families.py) and one builder (build.py).

Importing this package imports nothing else (numpy, keras): the names below are loaded on
first use, so ``edgekit --help`` does not pay for them; ``build_model`` lives in ``.build``.
"""

_FROM = {"family_names": "families", "get_spec": "families", "ArchSpec": "spec",
         "BlockSpec": "spec", "make_divisible": "spec", "scale": "spec",
         "spec_from_dict": "spec", "spec_to_dict": "spec"}
__all__ = sorted(_FROM)


def __getattr__(name: str):
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
