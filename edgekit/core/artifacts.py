"""Artifacts: a model file plus its JSON sidecar, format detection, hashing, atomic writes.

The sidecar (``model.tflite.json`` beside ``model.tflite``) records what every later stage
needs so nothing is re-guessed: format, precision, input/output spec, preprocessing, labels,
the sha256 of the file and of its parent, the stage and its config, and tool versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from .errors import BadInput, first_line

from .results import SIDECAR_SCHEMA, check
SUFFIX_FORMATS = {".keras": "keras", ".h5": "keras", ".hdf5": "keras",
                  ".tflite": "tflite", ".onnx": "onnx"}
MODEL_SUFFIXES = ", ".join(SUFFIX_FORMATS) + ", or a SavedModel folder"

def sidecar_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def sha256_of(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def detect_format(path: Path) -> str:
    """The model format of ``path``, checked against the file's first bytes."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise BadInput(f"{path}: a folder, but not a SavedModel (no saved_model.pb)")
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BadInput(f"{path}: not a model file (expected {MODEL_SUFFIXES})")
    size = path.stat().st_size
    if size == 0:
        raise BadInput(f"{path}: empty file")
    with open(path, "rb") as fh:
        head = fh.read(16)
    looks_like = {
        "tflite": len(head) >= 8 and head[4:8] == b"TFL3",
        "keras": (head.startswith(b"\x89HDF\r\n\x1a\n") if path.suffix.lower() in (".h5", ".hdf5")
                  else _zip_readable(path)),
        "onnx": head[:1] in (b"\x08", b"\x12", b"\x1a", b"\x22", b"\x3a", b"\x42"),  # protobuf tags
    }[fmt]
    if not looks_like:
        raise BadInput(f"{path}: not a valid {fmt} file (unexpected content)")
    if fmt == "keras" and path.suffix.lower() != ".keras":
        _check_hdf5(path)
    return fmt


def _zip_readable(path: Path) -> bool:
    """Whether the zip's central directory (where a reader starts) is intact."""
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def _check_hdf5(path: Path) -> None:
    """A truncated or damaged HDF5 file fails here, before any work (h5py reads only its
    superblock and root group)."""
    import h5py

    try:
        with h5py.File(path, "r"):
            pass
    except Exception as exc:  # h5py raises OSError/KeyError/ValueError... for damaged files
        raise BadInput(f"{path}: not a readable HDF5 file ({first_line(exc, 120)})") from None


def tool_versions(*names: str) -> dict[str, str]:
    out = {}
    for name in ("edgekit", *names):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


@dataclass
class Artifact:
    """A model on disk and what its sidecar (or the caller) knows about it."""

    path: Path
    format: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def precision(self) -> str | None:
        return self.meta.get("precision")

    @property
    def preprocessing(self) -> dict | None:
        return self.meta.get("preprocessing")

    @property
    def labels(self) -> list[str] | None:
        return self.meta.get("labels")

    @property
    def sha256(self) -> str:
        if "sha256" not in self.meta:
            self.meta["sha256"] = sha256_of(self.path)
        return self.meta["sha256"]

    def to_json(self) -> dict[str, Any]:
        """The sidecar's facts with the model's path, as ``--json`` prints them."""
        return {**self.meta, "path": str(self.path)}


def open_artifact(path: str | Path) -> Artifact:
    """Open a model file or SavedModel folder, with its sidecar when there is a valid one."""
    path = Path(path)
    fmt = detect_format(path)
    meta: dict[str, Any] = {}
    side = sidecar_path(path)
    if side.is_file():
        try:
            meta = json.loads(side.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadInput(f"{side}: sidecar is not valid JSON ({exc.__class__.__name__})") from None
        if not isinstance(meta, dict) or meta.get("schema") != SIDECAR_SCHEMA:
            raise BadInput(f"{side}: not an edgekit sidecar (schema {SIDECAR_SCHEMA} expected)")
        check(meta, side)
        if meta.get("sha256") != sha256_of(path):
            # The model changed after the sidecar was written: its facts cannot be trusted.
            meta = {"stale_sidecar": str(side)}
    meta.setdefault("format", fmt)
    return Artifact(path=path, format=fmt, meta=meta)


def check_output(path: Path, force: bool, suffix: str | None = None) -> Path:
    """Fail early, before any work, on an output that could not be written."""
    path = Path(path)
    if suffix and path.suffix != suffix:
        raise BadInput(f"{path}: the output must be a {suffix} file")
    if path.exists() and not force:
        raise BadInput(f"{path} exists (use --force to overwrite)")
    if not path.parent.exists():
        raise BadInput(f"{path.parent}: output folder does not exist")
    return path


@contextlib.contextmanager
def atomic_path(path: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    path = check_output(Path(path), force)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".part{path.suffix}",
                               dir=path.parent)  # keep the suffix: writers (keras) check it
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.unlink()  # writers may create a file or a folder here
    try:
        yield tmp_path
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: Path, text: str, force: bool = False) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed into place)."""
    with atomic_path(path, force) as tmp:
        tmp.write_text(text)


def write_bytes_atomic(path: Path, data: bytes, force: bool = False) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: Path, doc: Any, force: bool = True, sort_keys: bool = False) -> None:
    """The one JSON writer: ``doc`` indented, whole or not at all."""
    text = json.dumps(doc, indent=2, sort_keys=sort_keys, default=str) + "\n"
    write_text_atomic(path, text, force=force)


def write_sidecar(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Complete ``meta`` with hash, size and schema and write it beside ``path``."""
    path = Path(path)
    full = {"schema": SIDECAR_SCHEMA, "file": path.name, **meta,
            "sha256": sha256_of(path), "size_bytes": size_of(path)}
    write_json_atomic(sidecar_path(path), full, sort_keys=True)
    return full


def update_sidecar(art: Artifact, **facts: Any) -> Artifact:
    """Add ``facts`` to the sidecar of an artifact edgekit wrote (hash and size recomputed)."""
    keep = {k: v for k, v in art.meta.items() if k not in ("sha256", "size_bytes", "schema", "file")}
    art.meta = write_sidecar(art.path, {**keep, **facts})
    return art


def child_meta(parent: Artifact, stage: str, config: dict[str, Any], **facts: Any) -> dict:
    """Sidecar content for an artifact made from ``parent`` by ``stage``."""
    inherited = {k: parent.meta[k] for k in ("preprocessing", "labels", "spec") if k in parent.meta}
    return {**inherited, **facts,
            "parent": {"path": str(parent.path), "sha256": parent.sha256,
                       "format": parent.format},
            "stage": {"name": stage, "config": config}}
