"""The layout keeps its promises: every module in common/, tools/ and scripts/ short enough to read
whole, every function short enough to hold in mind, and no import cycle between the bench's parts.

The limits are the issue's ("no function longer than about 80 lines of code, no module past about
400"): lines of code count neither blank lines, comments nor docstrings.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARY_FOLDERS = ("common", "tools", "scripts")
MAX_MODULE_LINES = 400
MAX_FUNCTION_CODE_LINES = 80


def _modules() -> list[pathlib.Path]:
    return sorted(path for folder in LIBRARY_FOLDERS for path in (ROOT / folder).rglob("*.py"))


def _code_lines(source_lines: list[str], node: ast.AST) -> int:
    """Lines of `node` that hold code: no blank line, comment or docstring."""
    body = node.body
    first = body[0]
    docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    docstring_lines = set()
    if docstring and isinstance(first.value.value, str):
        docstring_lines = set(range(first.lineno, first.end_lineno + 1))
    count = 0
    for number in range(node.lineno, node.end_lineno + 1):
        text = source_lines[number - 1].strip()
        if text and not text.startswith("#") and number not in docstring_lines:
            count += 1
    return count


def test_the_library_has_modules_to_check():
    names = {path.relative_to(ROOT).as_posix() for path in _modules()}
    assert "common/loop/training_loop.py" in names
    assert "tools/inspect_logdir/__init__.py" in names


@pytest.mark.parametrize("path", _modules(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_module_and_its_functions_are_short(path):
    source = path.read_text()
    lines = source.splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{len(lines)} lines: split it by job"
    long_functions = [
        f"{node.name} (line {node.lineno}): {_code_lines(lines, node)} lines of code"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and _code_lines(lines, node) > MAX_FUNCTION_CODE_LINES
    ]
    assert not long_functions


def test_the_counter_counts_code_only():
    source = 'def f():\n    """Doc.\n\n    More."""\n    # why\n\n    return 1\n'
    node = ast.parse(source).body[0]
    assert _code_lines(source.splitlines(), node) == 2  # the def line and the return


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path, known: set[str]) -> set[str]:
    """The first-party modules `path` imports at its top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return found & known


def test_no_import_cycles():
    paths = {_module_name(path): path for path in _modules()}
    known = set(paths)
    graph = {name: _imports(path, known) - {name} for name, path in paths.items()}
    # A package's __init__ that re-exports its submodules is not a cycle with them.
    graph = {
        name: {imported for imported in targets if not imported.startswith(name + ".")}
        for name, targets in graph.items()
    }
    cycles = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                cycles.append(" -> ".join([*trail[trail.index(imported) :], imported]))
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles


def test_the_library_imports_no_app_or_tool():
    """common/ is what apps, tools and scripts build on, never the other way round; the doctor
    reads any logdir without the apps."""
    paths = {_module_name(path): path for path in _modules()}
    apps = {_module_name(path) for path in (ROOT / "apps").rglob("*.py")}
    known = set(paths) | apps
    upward = []
    for name, path in paths.items():
        imported = _imports(path, known | {"apps", "tools", "scripts"})
        not_allowed = ("apps", "tools", "scripts") if name.startswith("common") else ("apps",)
        if name.startswith(("common", "tools")):
            upward += [
                f"{name} imports {module}"
                for module in imported
                if module.split(".")[0] in not_allowed
            ]
    assert not upward


# common/'s floors, lowest first: a package imports only from its own floor's package and below.
FLOORS = {"root": 0, "logdir": 1, "checkpoints": 2, "summaries": 2, "loop": 3}


def _floor_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) >= 2 and parts[1] in FLOORS else "root"


def test_each_part_of_common_imports_only_its_own_and_lower_floors():
    """The logdir's safety needs nothing of the checkpoints, the summaries or the loop; the
    checkpoints and the summaries need nothing of each other or of the loop."""
    paths = {_module_name(path): path for path in _modules()}
    common = {name: path for name, path in paths.items() if name.startswith("common.")}
    upward = []
    for name, path in common.items():
        floor = _floor_of(name)
        for imported in _imports(path, set(common)):
            other = _floor_of(imported)
            if other != floor and FLOORS[other] >= FLOORS[floor]:
                upward.append(f"{name} ({floor}) imports {imported} ({other})")
    assert not upward
