"""DESIGN.md §1 layering, checked on the import statements of every module."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["rm_core", "rm_server", "rm_agent", "rm_tui"]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


FORBIDDEN = {
    "rm_core": {"rm_server", "rm_agent", "rm_tui", "aiohttp", "textual", "aiosqlite", "click"},
    "rm_agent": {"rm_server", "rm_tui", "textual"},
    "rm_tui": {"rm_server", "rm_agent"},
    "rm_server": {"rm_agent", "rm_tui", "textual"},
}


@pytest.mark.parametrize("package", PACKAGES)
def test_layering(package):
    bad = []
    for path in modules(package):
        hits = imports_of(path) & FORBIDDEN[package]
        if hits:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(hits)}")
    assert not bad, "\n".join(bad)


def test_sql_only_in_store():
    bad = []
    for path in modules("rm_server"):
        if "store" in path.parts:
            continue
        if "aiosqlite" in imports_of(path) or "sqlite3" in imports_of(path):
            bad.append(str(path.relative_to(ROOT)))
    assert not bad, bad


def test_checker_catches_a_violation(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import textual\nfrom rm_server.app import create_app\n")
    assert imports_of(probe) & FORBIDDEN["rm_core"] == {"textual", "rm_server"}
