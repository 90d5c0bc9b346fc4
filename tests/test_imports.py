"""The import graph of the edgekit package, read from the source (every import, lazy ones
inside functions included): the library never imports the CLI, no module is in an import
cycle, and the CLI imports no heavy framework at start-up."""

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1] / "edgekit"


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _targets(module: str, path: Path, node: ast.AST) -> list[str]:
    """The dotted names an import statement may load (a module, or a name in one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module.split(".")
    if node.level:
        keep = len(base) - node.level + (1 if path.name == "__init__.py" else 0)
        prefix = ".".join(base[:keep] + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """edgekit module -> the edgekit modules it imports (anywhere in its code)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(module, path, node):
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # a package's __init__ is imported with its submodules: not an edge back
                if target and target != module and not module.startswith(target + "."):
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    # recipe.makes_model imports edgekit.stages inside a function
    assert "edgekit.stages" in graph["edgekit.recipes.schema"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_library_module_imports_the_cli():
    graph = import_graph()
    offenders = {m: sorted(t for t in targets if t.startswith("edgekit.cli"))
                 for m, targets in graph.items()
                 if not m.startswith("edgekit.cli") and m != "edgekit.__main__"}
    assert {m: t for m, t in offenders.items() if t} == {}


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_runtime_module_shadows_the_standard_library():
    """The harness runs as a script from edgekit/runtime, so that folder is first on its
    sys.path: a runtime/select.py would replace the standard ``select`` module there."""
    import sys

    names = {p.stem for p in (ROOT / "runtime").glob("*.py")}
    assert names & set(sys.stdlib_module_names) == set()


def test_the_cli_starts_without_models_or_frameworks():
    """``edgekit --help`` (and ``import edgekit.cli``) imports no pydantic model, no numpy and no
    rich: the stage commands are made when they run (``cli/lazy.py``)."""
    from conftest import modules_after

    stdout, loaded = modules_after(["--help"], ("pydantic", "numpy", "rich", "yaml", "tensorflow",
                                                "edgekit.stages.base", "edgekit.core.results"))
    assert "Commands:" in stdout
    assert loaded == []
