"""Model outputs are all or nothing: the file, its sidecar and the facts recorded after it.

``artifacts.atomic_path`` makes the model file itself appear whole or not at all. A command
goes on after that: the sidecar is written beside it, then a GPU check or a speed check adds
to the sidecar. A full disk or a Ctrl-C at any of those steps must not leave a model without
its sidecar (or with a sidecar that lacks what the command promised), so ``undo_on_failure``
wraps them and removes both files when the block does not finish. A disk error raised by a
writer that did not say which file it was writing (``OSError.filename`` is None for a failed
``write``) is given the output's path, so the one-line error names it.

Before anything is written, ``core.errors.ctrl_c_stops`` wraps the conversion: a Ctrl-C that lands inside
TensorFlow's tracing can surface as another exception (seen: ``SystemError: bad argument to
internal function`` from ``auto_control_deps``, which the converters would report as a failed
conversion), and one that a library swallows (Keras' bare ``except``) would let the command
go on and write its output. After a Ctrl-C, both become the KeyboardInterrupt they are.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from ..core.artifacts import atomic_path, sidecar_path

T = TypeVar("T")




@contextlib.contextmanager
def naming_disk_errors(out: Path) -> Iterator[None]:
    """An OSError without a file name gets ``out``'s."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(out)
        raise


def write_model(out: Path, force: bool, write: Callable[[Path], T]) -> T:
    """``write(tmp)`` into a temporary path beside ``out``, renamed to ``out`` only if it
    returns; whatever ``write`` returns is returned."""
    with naming_disk_errors(out), atomic_path(out, force) as tmp:
        return write(tmp)


@contextlib.contextmanager
def undo_on_failure(out: Path) -> Iterator[None]:
    """Remove ``out`` (written by this command just before) and its sidecar if the block
    raises or is interrupted. Use it only after the command wrote ``out``."""
    out = Path(out)
    try:
        with naming_disk_errors(out):
            yield
    except BaseException:
        for path in (out, sidecar_path(out)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        raise
