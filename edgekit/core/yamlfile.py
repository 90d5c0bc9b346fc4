"""YAML files validated with pydantic; every problem is one BadInput naming the file and line
(``recipe.yaml:15: stages.1.mode: Input should be a valid string``). Device profiles and
recipes are read through here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import BadInput

M = TypeVar("M", bound=BaseModel)
MAX_BYTES = 1_000_000  # recipes and device profiles are a few KB
MAX_NODES = 100_000  # values after expanding aliases


def load_validated(path: Path, model: type[M], what: str) -> tuple[M, yaml.Node]:
    """``model`` validated from the YAML file ``path`` (``what`` names it in errors), and the
    file's node tree, for locating later errors with ``error_at``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: cannot read ({exc})") from None
    if len(text) > MAX_BYTES:
        raise BadInput(f"{path}: {len(text)} characters is too large for {what} "
                       f"(at most {MAX_BYTES})")
    try:
        # safe: plain data only, never Python objects; libyaml's parser when PyYAML has it
        # (about 10 times faster: `devices list` reads every device file)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
        try:
            node = loader.get_single_node()
            _check_tree(path, node)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        if "nesting depth" in problem:  # libyaml's limit; the pure-Python parser recurses
            raise BadInput(f"{path}:{where} YAML nested too deeply") from None
        raise BadInput(f"{path}:{where} malformed YAML ({problem})") from None
    except RecursionError:
        raise BadInput(f"{path}: YAML nested too deeply") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: {what} must be a YAML mapping")
    try:
        return model.model_validate(data), node
    except ValidationError as exc:
        raise validation_error(path, node, exc) from None


def _check_tree(path: Path, root: yaml.Node | None) -> None:
    """Refuse what PyYAML accepts but no edgekit file needs: a key given twice (PyYAML keeps
    the last silently) and aliases that expand to a huge document ("billion laughs": the
    parsed data shares the nodes, but validating it walks every expanded copy)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:  # expanded node count, each shared node counted once
        if id(node) not in sizes:
            sizes[id(node)] = 1  # a node that contains itself stops here
            children = ([c for kv in node.value for c in kv] if isinstance(node, yaml.MappingNode)
                        else node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[id(node)] = 1 + sum(size(c) for c in children)
        return sizes[id(node)]

    def walk(node: yaml.Node, seen: set[int]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: set = set()
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in keys:
                        raise BadInput(f"{path}:{k.start_mark.line + 1}: {k.value!r} is given "
                                       "twice")
                    keys.add(k.value)
                walk(v, seen)
        elif isinstance(node, yaml.SequenceNode):
            for c in node.value:
                walk(c, seen)

    if root is None:
        return
    walk(root, set())
    if size(root) > MAX_NODES:
        raise BadInput(f"{path}: the YAML expands to over {MAX_NODES} values (aliases)")


def validation_error(path: Path, node: yaml.Node, exc: ValidationError,
                     prefix: tuple = ()) -> BadInput:
    """The first of ``exc``'s errors (its location under ``prefix``) as a BadInput."""
    err = exc.errors()[0]
    return error_at(path, node, (*prefix, *err["loc"]), str(err["msg"]), exc.error_count() - 1)


def error_at(path: Path, node: yaml.Node, loc: tuple, msg: str, more: int = 0) -> BadInput:
    where = ".".join(str(p) for p in loc)
    msg = msg.removeprefix("Value error, ")
    extra = f" (+{more} more)" if more > 0 else ""
    return BadInput(f"{path}:{line_of(node, loc)}: {where + ': ' if where else ''}{msg}{extra}")


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """1-based line of the deepest YAML node on ``loc`` (mapping keys, list indices)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for key in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value in (str(key), str(key).replace("_", "-")):
                    child, line = v, k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
