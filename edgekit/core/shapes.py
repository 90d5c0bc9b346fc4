"""Image input shapes: which axis holds the channels, and a dynamic size made concrete.

A model exported with a dynamic height and width (``[None, 3, None, None]``, common for
detectors and fully-convolutional models) has no size edgekit can take for granted: counting
MACs, calibrating, converting or timing it needs ``--input-size H[xW]`` (or a whole shape such
as ``1x3x320x320``), or the size a sidecar recorded. Symbolic dimensions are never read as 1.
"""

from __future__ import annotations

import re
from typing import Sequence

from .errors import BadInput

_SIZE = re.compile(r"\d+(x\d+){0,3}")


def parse_input_size(text: str | None) -> tuple[int, int] | None:
    """(height, width) from ``H``, ``HxW`` or a 4-D shape (channels 1 or 3 on either side)."""
    if text is None:
        return None
    spec = str(text).strip().lower().replace("*", "x").replace(",", "x")
    if not _SIZE.fullmatch(spec):
        raise BadInput(f"--input-size {text!r}: expected H, HxW or a shape such as 1x3x320x320")
    dims = [int(d) for d in spec.split("x")]
    if len(dims) == 1:
        dims = dims * 2
    elif len(dims) == 4:
        dims = dims[2:] if channels_axis(dims) == 1 else dims[1:3]
    elif len(dims) == 3:
        raise BadInput(f"--input-size {text!r}: give H, HxW or all four dimensions")
    if min(dims) < 1 or max(dims) > 8192:
        raise BadInput(f"--input-size {text!r}: height and width must be 1..8192")
    return dims[0], dims[1]


def _known(d) -> bool:
    return isinstance(d, int) and d > 0


def channels_axis(shape: Sequence) -> int:
    """1 for NCHW, 3 for NHWC (4-D shapes; unknown dims may be None, strings or <= 0)."""
    c1, c3 = shape[1], shape[3]
    return 1 if (_known(c1) and c1 in (1, 3)) and not (_known(c3) and c3 in (1, 3)) else 3


def is_dynamic(shape: Sequence) -> bool:
    """Whether a 4-D image shape leaves its height or width open."""
    spatial = (shape[2], shape[3]) if channels_axis(shape) == 1 else (shape[1], shape[2])
    return not all(_known(d) for d in spatial)


def concrete(shape: Sequence, size: tuple[int, int] | None, what: str) -> list[int]:
    """``shape`` (4-D, same layout) with batch 1 and, where dynamic, height and width from
    ``size``; BadInput when a dimension stays unknown or ``size`` contradicts a fixed one."""
    if len(shape) != 4:
        raise BadInput(f"{what}: input shape {list(shape)} is not an image batch")
    axis = channels_axis(shape)
    h_ax, w_ax = (2, 3) if axis == 1 else (1, 2)
    out = [1, *shape[1:]]
    if size is not None:
        for ax, value in zip((h_ax, w_ax), size):
            if _known(out[ax]) and out[ax] != value:
                raise BadInput(f"{what}: --input-size {size[0]}x{size[1]} contradicts its fixed "
                               f"input shape {list(shape)}")
            out[ax] = value
    if not _known(out[axis]):
        raise BadInput(f"{what}: its input has an unknown number of channels ({list(shape)})")
    if not (_known(out[h_ax]) and _known(out[w_ax])):
        raise BadInput(f"{what}: its input size is dynamic ({list(shape)}); give it with "
                       "--input-size H[xW]")
    return [int(d) for d in out]
