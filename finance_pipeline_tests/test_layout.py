"""The package's structure (issue 18): the domain rooms import no Dagster, no two modules import
each other (directly or round a longer loop, lazy imports included), the test folders
mirror the package's, and only the edges read the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "finance_pipeline"
# The rooms that wrap Dagster (and the code location itself); every other room is plain Python.
DAGSTER_ROOMS = {"defs", "definitions", "cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, at any depth (lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        # A package and its own submodules are one room: their mutual imports are no cycle.
        graph[name] = {t for t in _imports(path) if t in modules and t != name
                       and not t.startswith(name + ".") and not name.startswith(t + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_lazy_imports_included():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("room", sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"
                                        and p.name not in DAGSTER_ROOMS))
def test_the_plain_rooms_import_no_dagster(room):
    users = [str(path.relative_to(ROOT)) for path in (PACKAGE / room).rglob("*.py")
             if any(name == "dagster" or name.startswith(("dagster.", "dagster_")) for name in _imports(path))]
    assert users == [], f"{room}/ is plain Python: move the Dagster part to finance_pipeline/defs/"


def test_the_test_folders_mirror_the_package():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    tests = {p.name for p in (ROOT / "finance_pipeline_tests").iterdir() if p.is_dir()}
    # Rooms whose tests live elsewhere for a reason: the CLI is tested end to end (e2e/), the
    # sandboxes and providers by the top-level test_*_sandbox / test_provider_pulls modules.
    elsewhere = {"cli": "e2e", "sandboxes": "test_stripe_sandbox.py", "providers": "test_provider_pulls.py"}
    missing = sorted(r for r in rooms - tests if r not in elsewhere)
    assert missing == [], f"no finance_pipeline_tests/ folder for {missing}"


# -- the environment is read at the edges only -------------------------------------------------

# The modules that may touch the process environment, and why:
# - settings.py: Settings.from_environ, the one reader of the variables;
# - definitions.py: the Dagster code location, which reads them when Dagster loads it;
# - cli/: the command line, which reads them when a command runs (cli/db.current_settings),
#   hands DATABASE_URL to the Dagster runs it launches in process (cli/db.py: a plain value
#   would be written into the instance), and builds the environment of `dagster dev`, another
#   process (cli/demo.py).
# The API app factory (api/app.create_app) is handed its values by `finance-pipeline serve`.
ENVIRONMENT_EDGES = ("finance_pipeline/settings.py", "finance_pipeline/definitions.py", "finance_pipeline/cli/")
_ENVIRONMENT_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def _environment_uses(tree: ast.AST) -> list[int]:
    """Lines that touch the process environment: ``os.environ``/``os.getenv``/... by attribute
    (under any alias of os), or ``environ``/``getenv``/... imported from os."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _ENVIRONMENT_NAMES:
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and \
                any(alias.name in _ENVIRONMENT_NAMES for alias in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def _import_time_nodes(tree: ast.Module):
    """The nodes that run when the module is imported: everything outside function bodies
    (a decorator, a default value or a class body runs at import; a def's body does not)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            todo.extend([*args.defaults, *[d for d in args.kw_defaults if d is not None]])
            todo.extend(getattr(node, "decorator_list", []))
            continue
        yield node
        todo.extend(ast.iter_child_nodes(node))


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_only_the_edges_touch_the_environment():
    readers = {}
    for path in _package_files():
        rel = str(path.relative_to(ROOT))
        if rel.startswith(ENVIRONMENT_EDGES):
            continue
        lines = _environment_uses(ast.parse(path.read_text()))
        if lines:
            readers[rel] = lines
    assert readers == {}, (f"{readers}: read the setting in finance_pipeline/settings.py "
                           "(Settings.from_environ) and hand the value down from the edge")


def test_nothing_reads_the_environment_at_import_time():
    found = {}
    for path in _package_files():
        tree = ast.parse(path.read_text())
        lines = sorted({node.lineno for node in _import_time_nodes(tree)
                        if (isinstance(node, ast.Attribute) and node.attr in _ENVIRONMENT_NAMES | {"from_environ"})
                        or (isinstance(node, ast.Name) and node.id == "current_settings")})
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert found == {}, f"{found}: read the environment when the definitions load or a command runs"


def test_envvars_are_made_in_one_place():
    """Resources get dg.EnvVar of the variable a setting was read from (defs/resources.configured)."""
    makers = [str(p.relative_to(ROOT)) for p in _package_files()
              if any(isinstance(n, ast.Attribute) and n.attr == "EnvVar" for n in ast.walk(ast.parse(p.read_text())))]
    assert makers == ["finance_pipeline/defs/resources.py"]


def test_the_environment_finder_finds_reads():
    source = """
import os
import os as o
from os import getenv
A = os.environ.get("A")
def f():
    return o.environ["B"], getenv("C")
"""
    tree = ast.parse(source)
    assert _environment_uses(tree) == [4, 5, 7]
    assert sorted({n.lineno for n in _import_time_nodes(tree)
                   if isinstance(n, ast.Attribute) and n.attr in _ENVIRONMENT_NAMES}) == [5]


# The rules read from the settings are handed down, never defaulted below the edge: every call
# in the package passes the configured posting window (FP_PARTITIONS_START, the future skew)
# and payout policy (FP_PAYOUT_TIERS, the approval TTL) explicitly.
_CONFIGURED = {
    "window": {"submit", "review", "plan_entries", "post_entries_in", "post_entries", "stage_batch", "apply_batch"},
    "policy": {"approve", "approval_status", "submit_or_retrigger"},
}
# Generic names count only on the modules that define them (not an executor's submit).
_OWNERS = {"submit": {"reviews"}, "review": {"reviews"}, "approve": {"service"}}


def _calls_without(tree: ast.AST) -> list[tuple[int, str, str]]:
    missing = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in _OWNERS and not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                                    and func.value.id in _OWNERS[name]):
            continue
        for keyword, names in _CONFIGURED.items():
            if name in names and keyword not in {k.arg for k in node.keywords}:
                missing.append((node.lineno, name, keyword))
    return missing


def test_configured_rules_are_passed_down_not_defaulted():
    found = {str(p.relative_to(ROOT)): m for p in _package_files() if (m := _calls_without(ast.parse(p.read_text())))}
    assert found == {}


def test_the_call_finder_finds_a_defaulted_rule():
    tree = ast.parse("posting.post_entries(engine, entries)\nservice.approve(e, 'p', 'a', 'r')\n"
                     "pool.submit(f)\nposting.post_entries(engine, entries, window=w)")
    assert _calls_without(tree) == [(1, "post_entries", "window"), (2, "approve", "policy")]
