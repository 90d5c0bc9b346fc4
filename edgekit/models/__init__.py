"""The model zoo: architecture as data (spec.py, families.py) and one builder (build.py).

Importing this package does not import keras; ``build_model`` lives in ``.build``.
"""

from .families import family_names, get_spec
from .spec import ArchSpec, BlockSpec, make_divisible, scale, spec_from_dict, spec_to_dict

__all__ = ["ArchSpec", "BlockSpec", "family_names", "get_spec", "make_divisible", "scale",
           "spec_from_dict", "spec_to_dict"]
