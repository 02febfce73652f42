"""Layering: the key store and Nebula import no feature, no import dodges a cycle, no cycles.

The package's module-level import graph is read with :mod:`ast` (imports under
``if TYPE_CHECKING:`` are for the type checker and are left out). Imports inside functions are
refused unless listed in :data:`FUNCTION_IMPORTS` with why they are there: never to hide a
cycle between farmhand's own modules.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import farmhand

SRC = Path(farmhand.__file__).resolve().parent
LOW_LAYERS = ("farmhand.keystore", "farmhand.nebula")
FEATURES = ("queue", "hostfiles", "deploy", "join", "lab", "cli")

FUNCTION_IMPORTS = {
    # Optional dependency: only `farmhand status --smb` needs smbprotocol.
    ("farmhand.inspect.status.smb", "smbclient"): "optional dependency (smbprotocol)",
    ("farmhand.inspect.status.smb", "smbprotocol.exceptions"): "optional dependency (smbprotocol)",
    # A slow import: only the job commands that move files need it.
    ("farmhand.jobs.transfer", "smbclient"): "start-up speed (smbprotocol)",
    ("farmhand.jobs.transfer", "smbclient.shutil"): "start-up speed (smbprotocol)",
    ("farmhand.jobs.transfer", "smbprotocol.exceptions"): "start-up speed (smbprotocol)",
    # Optional on Python < 3.11 (blender-asset-tracer needs 3.11): only submit packs.
    ("farmhand.jobs.packing", "blender_asset_tracer"): "optional dependency (Python 3.11+)",
    ("farmhand.jobs.packing", "blender_asset_tracer.pack"): "optional dependency (Python 3.11+)",
    # Platform modules: one exists on Windows, the other everywhere else.
    ("farmhand.keystore.fs", "msvcrt"): "Windows only",
    ("farmhand.keystore.fs", "fcntl"): "POSIX only",
    # Linux only, and only in the lab's child processes.
    ("farmhand.lab.system", "ctypes"): "start-up speed (prctl in lab children only)",
}
"""(module, imported module) -> why it is imported inside a function."""


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules an import statement names (farmhand's own and others)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]
        for _ in range(node.level - 1):
            package = package.rsplit(".", 1)[0]
        base = f"{package}.{base}" if base else package
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in MODULES else base


def _module_level(module: str) -> Iterator[str]:
    """Imports run when the module is imported: everything outside functions and classes'
    methods, except under ``if TYPE_CHECKING:``."""

    def walk(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield from _targets(module, node)
            elif isinstance(node, ast.If):
                if not _is_type_checking(node):
                    yield from walk(node.body)
                yield from walk(node.orelse)
            elif isinstance(node, (ast.Try, ast.With, ast.ClassDef)):
                for field in ("body", "orelse", "finalbody"):
                    yield from walk(getattr(node, field, []))
                for handler in getattr(node, "handlers", []):
                    yield from walk(handler.body)

    yield from walk(ast.parse(MODULES[module].read_text()).body)


def _in_functions(module: str) -> Iterator[tuple[str, int]]:
    tree = ast.parse(MODULES[module].read_text())
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    for target in _targets(module, node):
                        yield target, node.lineno


def graph() -> dict[str, set[str]]:
    return {
        module: {t for t in _module_level(module) if t in MODULES and t != module}
        for module in MODULES
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph (its modules in import order, the first repeated), or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_farmhand_modules() -> None:
    cycle = find_cycle(graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_import_inside_a_function_dodges_a_cycle() -> None:
    found = {(module, target): line for module in MODULES for target, line in _in_functions(module)}
    unlisted = sorted(
        f"{MODULES[m]}:{line} imports {t}"
        for (m, t), line in found.items()
        if (m, t) not in FUNCTION_IMPORTS
    )
    assert not unlisted, "imports inside functions (move them to the top):\n" + "\n".join(unlisted)
    assert not [t for _, t in FUNCTION_IMPORTS if t.split(".")[0] == "farmhand"]
    assert set(FUNCTION_IMPORTS) <= set(found), "FUNCTION_IMPORTS lists imports that are gone"


def test_key_store_and_nebula_import_no_feature() -> None:
    low = [m for m in MODULES if m.startswith(LOW_LAYERS)]
    code = (
        "import importlib, json, sys\n"
        f"for name in {low!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('farmhand'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    loaded = json.loads(out)
    assert set(low) <= set(loaded)
    features = [m for m in loaded if m.split(".")[1:2] and m.split(".")[1] in FEATURES]
    assert not features, f"the key store or nebula imports features: {features}"


def test_the_cli_declares_every_farm_wide_secret() -> None:
    """Features declare their secrets when imported; the CLI imports them all (a store made or
    changed through farmhand gets the queue's TLS material)."""
    code = (
        "import farmhand.cli\n"
        "from farmhand.keystore import farm_secrets\n"
        "print(' '.join(s.name for s in farm_secrets.EXTRA_SECRETS))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert sorted(out.stdout.split()) == [
        "jobs-key-seed",
        "lease-claim-key",
        "lease-host-key",
        "munge-key",
        "queue-tls",
        "smb-worker-key",
    ]
