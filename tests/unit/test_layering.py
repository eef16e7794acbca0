"""Layering (docs/architecture.md, "Layering and the server's rules"), checked on the source
of every module: which packages each of ours may import (an allow-list, so a new dependency
is a decision), which way imports run inside rm_server, SQL only in rm_server/store, audited
writes only through services, and no import cycles. Every checker is a plain function over
a folder, and the probe tests at the bottom plant a violation in a fake tree to show each
one can fail."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

STDLIB = frozenset(sys.stdlib_module_names)
# Third-party packages each of ours may import, besides the standard library and itself.
ALLOWED = {
    "rm_core": {"pydantic", "pydantic_core", "croniter"},
    "rm_server": {"rm_core", "aiohttp", "psycopg", "pydantic", "pydantic_core", "bcrypt", "cryptography", "click",
                  "apprise"},
    "rm_agent": {"rm_core", "aiohttp", "pydantic", "pydantic_core", "croniter", "cryptography", "click"},
    "rm_tui": {"rm_core", "aiohttp", "pydantic", "pydantic_core", "textual", "rich", "click"},
}
# Fewer modules than this means the walk is looking in the wrong place, not that all is well.
AT_LEAST = {"rm_core": 8, "rm_server": 40, "rm_agent": 8, "rm_tui": 10}
# Packages whose modules must not import each other in a loop.
ACYCLIC = ["rm_core", "rm_server", "rm_agent", "rm_tui"]
# Which way imports run inside rm_server: the modules under the first name import none under
# the others. The store is the bottom; services get their collaborators by constructor, never
# from the application (keys.py) or a route; the hubs hold connections and know no service.
ROUTES = ("rm_server.api", "rm_server.keys", "rm_server.app", "rm_server.ws.agents", "rm_server.ws.events")
DIRECTION = {
    "rm_server.store": ("rm_server.services", "rm_server.ws") + ROUTES,
    "rm_server.services": ROUTES,
    "rm_server.ws.agent_hub": ("rm_server.services",) + ROUTES,
    "rm_server.ws.event_hub": ("rm_server.services",) + ROUTES,
}


# ------------------------------------------------------------------ reading a tree


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `package` under `root`."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name the module imports, relative imports resolved, `from a import b`
    giving both `a` and `a.b` (b may be a submodule); imports under TYPE_CHECKING count too."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            found.add(origin)
            found |= {f"{origin}.{a.name}" for a in node.names}
    return found


def top_levels(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names if n}


# ------------------------------------------------------------------ the checks


def layering_violations(root: Path, package: str, allowed: set[str]) -> list[str]:
    bad = []
    for name, path in modules(root, package).items():
        foreign = top_levels(imported_names(path, name)) - STDLIB - allowed - {package}
        if foreign:
            bad.append(f"{path.relative_to(root)} imports {sorted(foreign)}")
    return bad


SQL_TEXT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|PRAGMA|BEGIN|WITH)\s")
SQL_CALLS = {"execute", "executemany", "executescript", "execute_fetchall", "fetchone", "fetchall"}


def sql_outside_store(root: Path) -> list[str]:
    """Modules of rm_server outside rm_server/store that touch SQLite or hold SQL."""
    bad = []
    for name, path in modules(root, "rm_server").items():
        if name == "rm_server.store" or name.startswith("rm_server.store."):
            continue
        where = str(path.relative_to(root))
        if top_levels(imported_names(path, name)) & {"sqlite3", "aiosqlite", "psycopg"}:
            bad.append(f"{where} imports sqlite")
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS:
                bad.append(f"{where}:{node.lineno} calls .{node.func.attr}()")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.match(node.value):
                bad.append(f"{where}:{node.lineno} holds SQL {node.value[:40]!r}")
    return bad


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def direction_violations(root: Path, rules: dict[str, tuple[str, ...]]) -> list[str]:
    """Modules of rm_server importing a layer their own layer must not (DIRECTION)."""
    bad = []
    for name, path in modules(root, "rm_server").items():
        for layer, forbidden in rules.items():
            if within(name, layer):
                wrong = sorted({f for n in imported_names(path, name) for f in forbidden if within(n, f)})
                if wrong:
                    bad.append(f"{path.relative_to(root)} imports {wrong}")
    return bad


def audited_writes(root: Path) -> set[tuple[str, str]]:
    """(table, method) for each store method that writes an audit row: `store.<table>.<method>`.
    A table is reached as the lower-cased name of its class (Operators -> store.operators)."""
    found = set()
    for path in sorted((root / "rm_server/store").glob("*.py")):
        for cls in ast.parse(path.read_text(), str(path)).body:
            if not isinstance(cls, ast.ClassDef):
                continue
            for fn in cls.body:
                if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "audit"
                        for n in ast.walk(fn)):
                    found.add((cls.name.lower(), fn.name))
    return found


def writes_in_routes(root: Path) -> list[str]:
    """Calls from a route (api/, ws/) straight to an audited store write: a write with
    consequences goes through its service (docs/architecture.md, the server's rules)."""
    writes = audited_writes(root)
    bad = []
    for name, path in modules(root, "rm_server").items():
        if not (within(name, "rm_server.api") or within(name, "rm_server.ws")):
            continue
        where = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Attribute)
                    and (node.func.value.attr, node.func.attr) in writes):
                bad.append(f"{where}:{node.lineno} calls store.{node.func.value.attr}.{node.func.attr}()")
    return bad


def frame_builders(root: Path, frame_type: str) -> list[str]:
    """Modules of rm_server that name a frame type as a string: where such frames are built."""
    found = []
    for name, path in modules(root, "rm_server").items():
        tree = ast.parse(path.read_text(), str(path))
        if any(isinstance(n, ast.Constant) and n.value == frame_type for n in ast.walk(tree)):
            found.append(str(path.relative_to(root)))
    return found


def app_keys_outside_keys(root: Path) -> list[str]:
    """Application keys made anywhere but rm_server/keys.py (every key the app holds is there)."""
    bad = []
    for name, path in modules(root, "rm_server").items():
        if name == "rm_server.keys":
            continue
        where = str(path.relative_to(root))
        for node in ast.walk(ast.parse(path.read_text(), where)):
            if isinstance(node, ast.Call) and (getattr(node.func, "attr", None) == "AppKey"
                                               or getattr(node.func, "id", None) == "AppKey"):
                bad.append(f"{where}:{node.lineno} makes an AppKey")
    return bad


def import_cycles(root: Path, package: str) -> list[list[str]]:
    """Loops among the package's modules (each reported once, as the modules on it)."""
    mods = modules(root, package)
    graph = {name: sorted(imported_names(path, name) & set(mods) - {name}) for name, path in mods.items()}
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


# ------------------------------------------------------------------ the real tree


@pytest.mark.parametrize("package", list(ALLOWED))
def test_walk_finds_the_package(package):
    found = modules(ROOT, package)
    assert len(found) >= AT_LEAST[package], f"only {len(found)} modules found under {ROOT / package}"
    assert package in found  # its __init__.py


@pytest.mark.parametrize("package", list(ALLOWED))
def test_imports_only_what_is_allowed(package):
    bad = layering_violations(ROOT, package, ALLOWED[package])
    assert not bad, "\n".join(bad)


def test_sql_only_in_store():
    assert len([m for m in modules(ROOT, "rm_server") if not m.startswith("rm_server.store")]) >= 25
    bad = sql_outside_store(ROOT)
    assert not bad, "\n".join(bad)


def test_imports_run_one_way_inside_the_server():
    for layer in DIRECTION:
        assert [m for m in modules(ROOT, "rm_server") if within(m, layer)], f"no module {layer} in the tree"
    bad = direction_violations(ROOT, DIRECTION)
    assert not bad, "\n".join(bad)


def test_routes_write_with_consequences_only_through_services():
    writes = audited_writes(ROOT)
    assert len(writes) >= 20 and len({table for table, _ in writes}) >= 8, sorted(writes)
    bad = writes_in_routes(ROOT)
    assert not bad, "\n".join(bad)


def test_schedule_sets_are_built_in_one_place():
    # a schedule change, a fleet policy and a hello all send through send_schedule_sets
    assert frame_builders(ROOT, "schedule.set") == ["rm_server/services/schedules.py"]


def test_every_app_key_is_in_keys_py():
    bad = app_keys_outside_keys(ROOT)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_import_cycles(package):
    cycles = import_cycles(ROOT, package)
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


# ------------------------------------------------------------------ each check can fail


def plant(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_probe_layering_catches_a_forbidden_import(tmp_path):
    root = plant(tmp_path, {
        "rm_core/__init__.py": "",
        "rm_core/ok.py": "import json\nfrom pydantic import BaseModel\nfrom rm_core import ok\n",
        "rm_core/bad.py": "import textual\nfrom rm_server.app import create_app\nimport aiosqlite\n",
    })
    assert len(modules(root, "rm_core")) == 3
    bad = layering_violations(root, "rm_core", ALLOWED["rm_core"])
    assert bad == ["rm_core/bad.py imports ['aiosqlite', 'rm_server', 'textual']"]


def test_probe_sql_outside_store_is_caught(tmp_path):
    root = plant(tmp_path, {
        "rm_server/__init__.py": "",
        "rm_server/store/__init__.py": "import aiosqlite\nQ = 'SELECT 1 FROM hosts'\n",
        "rm_server/api/__init__.py": "",
        "rm_server/api/a.py": "import aiosqlite\n",
        "rm_server/api/b.py": "async def f(store):\n    await store.db.fetchone('SELECT 1')\n",
        "rm_server/api/c.py": "async def f(conn):\n    await conn.executemany(q, [])\n",
        "rm_server/api/d.py": "HINT = 'select a row'\nQ = '''\n  UPDATE hosts SET x = 1'''\n",
    })
    bad = sql_outside_store(root)
    assert bad == [
        "rm_server/api/a.py imports sqlite",
        "rm_server/api/b.py:2 calls .fetchone()",
        "rm_server/api/b.py:2 holds SQL 'SELECT 1'",
        "rm_server/api/c.py:2 calls .executemany()",
        "rm_server/api/d.py:2 holds SQL '\\n  UPDATE hosts SET x = 1'",
    ], bad


def test_probe_import_cycle_is_caught(tmp_path):
    root = plant(tmp_path, {
        "rm_server/__init__.py": "",
        "rm_server/keys.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rm_server.ws.hub import Hub\n",
        "rm_server/ws/__init__.py": "",
        "rm_server/ws/hub.py": "from .. import services\n",
        "rm_server/services.py": "from rm_server.keys import HUB\n",
        "rm_server/leaf.py": "from rm_server import keys\n",
    })
    assert import_cycles(root, "rm_server") == [["rm_server.keys", "rm_server.services", "rm_server.ws.hub"]]
    (root / "rm_server/services.py").write_text("")
    assert import_cycles(root, "rm_server") == []


def test_probe_wrong_direction_is_caught(tmp_path):
    root = plant(tmp_path, {
        "rm_server/__init__.py": "",
        "rm_server/keys.py": "from rm_server.store import Store\nfrom rm_server.services.jobs import JobService\n",
        "rm_server/store/__init__.py": "from rm_server.store.hosts import Hosts\n",
        "rm_server/store/hosts.py": "from rm_server.services.jobs import JobService\n",
        "rm_server/store/jobs.py": "from rm_server import keys\n",
        "rm_server/services/__init__.py": "",
        "rm_server/services/jobs.py": "from rm_server.store import Store\nfrom rm_server.ws.agent_hub import AgentHub\n",
        "rm_server/services/hosts.py": "from rm_server.keys import STORE\nfrom ..api.common import reply\n",
        "rm_server/ws/__init__.py": "",
        "rm_server/ws/agent_hub.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                    "    from rm_server.services.jobs import JobService\n",
        "rm_server/ws/event_hub.py": "from rm_core import protocol\n",
        "rm_server/ws/agents.py": "from rm_server.services.jobs import JobService\nfrom rm_server.keys import JOBS\n",
    })
    assert direction_violations(root, DIRECTION) == [
        "rm_server/services/hosts.py imports ['rm_server.api', 'rm_server.keys']",
        "rm_server/store/hosts.py imports ['rm_server.services']",
        "rm_server/store/jobs.py imports ['rm_server.keys']",
        "rm_server/ws/agent_hub.py imports ['rm_server.services']",
    ]


def test_probe_a_second_frame_builder_is_caught(tmp_path):
    root = plant(tmp_path, {
        "rm_server/__init__.py": '"""Sends `schedule.set` frames."""\n',
        "rm_server/a.py": "FRAME = 'schedule.set'\n",
        "rm_server/b.py": "def f(p, x):\n    return p.encode_raw('schedule.set', x)\n",
        "rm_server/c.py": "def f(p, x):\n    return p.encode_raw('schedule.ack', x)\n",
    })
    assert frame_builders(root, "schedule.set") == ["rm_server/a.py", "rm_server/b.py"]


def test_probe_an_app_key_outside_keys_py_is_caught(tmp_path):
    root = plant(tmp_path, {
        "rm_server/__init__.py": "",
        "rm_server/keys.py": "from aiohttp import web\nA = web.AppKey('a', int)\n",
        "rm_server/api/__init__.py": "",
        "rm_server/api/x.py": "from aiohttp import web\nfrom aiohttp.web import AppKey\n"
                              "B = web.AppKey('b', dict)\nC = AppKey('c', object)\nD = web.RequestKey('d', str)\n",
    })
    assert app_keys_outside_keys(root) == ["rm_server/api/x.py:3 makes an AppKey", "rm_server/api/x.py:4 makes an AppKey"]


def test_probe_audited_write_in_a_route_is_caught(tmp_path):
    root = plant(tmp_path, {
        "rm_server/__init__.py": "",
        "rm_server/store/__init__.py": "",
        "rm_server/store/hosts.py": (
            "class Hosts(Table):\n"
            "    async def get(self, host_id):\n        return await self.db.fetchone('SELECT 1')\n"
            "    async def touch(self, host_id):\n        async with self.tx() as tx:\n            pass\n"
            "    async def rename(self, actor, host_id, name):\n        async with self.tx() as tx:\n"
            "            await tx.audit(actor, 'host.rename', host_id)\n"),
        "rm_server/api/__init__.py": "",
        "rm_server/api/hosts.py": ("async def a(request):\n    await request.app[STORE].hosts.get('h')\n"
                                   "    await request.app[STORE].hosts.touch('h')\n"
                                   "    await request.app[HOSTS].rename(actor, 'h', 'n')\n"
                                   "    await request.app[STORE].hosts.rename(actor, 'h', 'n')\n"),
        "rm_server/ws/__init__.py": "",
        "rm_server/ws/events.py": "async def b(store):\n    await store.hosts.rename(None, 'h', 'n')\n",
        "rm_server/services/__init__.py": "",
        "rm_server/services/hosts.py": "async def c(store):\n    await store.hosts.rename(None, 'h', 'n')\n",
    })
    assert audited_writes(root) == {("hosts", "rename")}
    assert writes_in_routes(root) == [
        "rm_server/api/hosts.py:5 calls store.hosts.rename()",
        "rm_server/ws/events.py:2 calls store.hosts.rename()",
    ]
