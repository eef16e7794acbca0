"""Public APIs only (brief, issue 18 item 4): no `obj._name` of the standard library or of a
dependency anywhere in our code, tests, benches or scripts. A private name is allowed only
when our own tree defines it (a method, attribute or function of ours): anything else is
someone else's internals, which move between releases (3.13 removed one the server used)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TREES = ["rm_core", "rm_server", "rm_agent", "rm_tui", "tests", "bench", "scripts"]
# Documented names that start with an underscore: namedtuple's API (so it cannot clash with
# field names) and os._exit.
DOCUMENTED = {"_replace", "_asdict", "_fields", "_make", "_field_defaults", "_exit"}
# Files exempt while someone rewrites them: none (store/db.py left aiosqlite's internals
# behind when the store took its own connection threads, store/lanes.py).
PENDING: set[str] = set()


def python_files(root: Path) -> list[Path]:
    return [p for tree in TREES for p in sorted((root / tree).rglob("*.py")) if ".venv" not in p.parts]


def defined_names(trees: list[ast.AST]) -> set[str]:
    """Every name our own code defines: functions, classes, attributes it assigns, arguments."""
    out = set(DOCUMENTED)
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                out.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                out.add(node.id)
            elif isinstance(node, ast.arg):
                out.add(node.arg)
    return out


def foreign_private_uses(root: Path, skip: set[str] = frozenset()) -> list[str]:
    files = python_files(root)
    parsed = {p: ast.parse(p.read_text(), str(p)) for p in files}
    ours = defined_names(list(parsed.values()))
    found = []
    for path, tree in parsed.items():
        rel = str(path.relative_to(root))
        if rel in skip:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and node.attr not in ours:
                found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level \
                    and not node.module.startswith(tuple(TREES)):
                found += [f"{rel}:{node.lineno}: from {node.module} import {a.name}"
                          for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_private_name_of_the_standard_library_or_a_dependency():
    assert foreign_private_uses(ROOT, PENDING) == []


def test_the_check_finds_a_planted_private_use(tmp_path):
    (tmp_path / "rm_server").mkdir()
    (tmp_path / "rm_server" / "cli.py").write_text(
        "from asyncio.base_events import _format_handle\n"
        "class Mine:\n    def __init__(self):\n        self._own = 1\n\n"
        "def port(site, me):\n    me._own\n    return site._server.sockets[0]\n")
    assert foreign_private_uses(tmp_path) == [
        "rm_server/cli.py:1: from asyncio.base_events import _format_handle",
        "rm_server/cli.py:8: site._server"]
