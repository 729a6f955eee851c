"""Enforces the dependency rules of ARCHITECTURE.md §3 by parsing every module's imports.

Every module under ``raftkv/`` must be classified in ``ALLOWED`` (a new module fails the test
until it is), may import from raftkv only what its row allows (plus ``raftkv.errors``), and the
pure layers import none of the I/O and clock modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "raftkv"

# module (dotted, relative to raftkv) -> raftkv prefixes it may import (errors is always allowed)
ALLOWED: dict[str, set[str]] = {
    "": {"client", "errors"},
    "errors": set(),
    "client": {"api.models", "api.codec"},
    "cli": {"client", "api.models", "api.codec", "recipes"},
    "recipes": {"client", "recipes"},
    "recipes.lock": {"client", "recipes"},
    "recipes.election": {"client", "recipes"},
    "recipes.registry": {"client", "recipes"},
    "recipes.session": {"client", "recipes"},
    "recipes.ratelimit": {"client", "recipes"},
    "recipes.flags": {"client", "recipes"},
    "replica": {"raft", "state"},
    "raft": {"raft"},
    "raft.types": set(),
    "raft.storage": {"raft.types"},
    "raft.log": {"raft.types", "raft.storage"},
    "raft.tracker": {"raft.types"},
    "raft.confchange": {"raft.types"},
    "raft.core": {"raft.types", "raft.log", "raft.tracker", "raft.confchange", "raft.storage"},
    "raft.node": {"raft.core", "raft.types", "raft.storage"},
    "raft.wire": {"raft.types"},
    "state": {"state"},
    "state.commands": set(),
    "state.mvcc": {"state.commands"},
    "state.lease": {"state.commands"},
    "state.watch": {"state.mvcc", "state.commands"},
    "state.machine": {"state.commands", "state.mvcc", "state.lease"},
    "storage": {"storage"},
    "storage.wal": {"raft.types", "raft.wire", "storage"},
    "storage.snapshot": {"raft.types", "raft.wire", "storage"},
    "storage.disk": {"storage", "raft.storage", "raft.types", "raft.wire"},
    "api": {"api"},
    "api.models": set(),
    "api.codec": set(),
    "api.service": {"api.models"},
    "api.v3": {"api"},
    "transport": {"transport"},
    "transport.frames": {"raft.types", "raft.wire"},
    "transport.peer": {"transport.frames", "raft.types", "raft.wire"},
    "server": {"server"},
    "server.config": set(),
    "server.bootstrap": {"server.config", "storage", "state", "raft.types", "replica"},
    "server.driver": {"server.config", "replica", "raft", "state", "storage", "transport"},
    "server.service": {"server.driver", "server.config", "state", "api.models", "api.service", "api"},
    "server.app": {"server", "api", "transport", "storage"},
    "server.main": {"server", "errors"},
    "checker": {"checker"},
    "checker.history": set(),
    "checker.wgl": {"checker"},
    "checker.models": {"checker"},
    "checker.revorder": {"checker"},
    "checker.parallel": {"checker"},
    "sim": {"sim"},
    "sim.world": {"replica", "raft", "state", "sim"},
    "sim.disk": {"replica", "raft", "state", "sim"},
    "sim.net": {"replica", "raft", "state", "sim"},
    "sim.clients": {"replica", "raft", "state", "sim"},
    "sim.checks": {"replica", "raft", "state", "sim"},
    "sim.leases": {"state", "sim"},
    "sim.watchers": {"state", "sim"},
    "sim.script": {"replica", "raft", "state", "sim"},
    "sim.profile": {"replica", "raft", "state", "sim"},
    "sim.cli": {"replica", "raft", "state", "sim"},
}

PURE_LAYERS = ("raft", "state", "replica", "sim")
FORBIDDEN_IN_PURE = {"asyncio", "time", "os", "socket", "threading", "subprocess", "datetime"}
# The simulator's command line may use the process pool to spread seeds over cores.
PURE_EXCEPTIONS = {"sim.cli": {"os"}}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str | None = None) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = (name if name is not None else module_name(path)).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(["raftkv", *base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append(target)
            found.extend(f"{target}.{alias.name}" for alias in node.names)
    return found


def modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py"))


def test_every_module_is_classified() -> None:
    missing = [module_name(p) for p in modules() if module_name(p) not in ALLOWED]
    assert not missing, f"classify these modules in tests/test_layering.py ALLOWED: {missing}"


def allowed_target(target: str, allowed: set[str]) -> bool:
    inner = target.removeprefix("raftkv").lstrip(".")
    if inner == "" or inner == "errors" or inner.startswith("errors."):
        return True
    # ``from raftkv.api import models`` names the package too; packages only re-export.
    return any(inner == a or inner.startswith(a + ".") or a.startswith(inner + ".") for a in allowed)


def is_raftkv_module(target: str) -> bool:
    """``from raftkv.raft import types`` lists raftkv.raft.types; only real modules count."""
    return target == "raftkv" or target.startswith("raftkv.")


def test_layers_only_point_down() -> None:
    problems = []
    for path in modules():
        name = module_name(path)
        allowed = ALLOWED.get(name, set())
        for target in imports_of(path):
            if not is_raftkv_module(target):
                continue
            if not allowed_target(target, allowed):
                problems.append(f"{name} imports {target}")
    assert not problems, "\n".join(problems)


def test_pure_layers_do_no_io() -> None:
    problems = []
    for path in modules():
        name = module_name(path)
        if not name.startswith(PURE_LAYERS):
            continue
        exempt = PURE_EXCEPTIONS.get(name, set())
        for target in imports_of(path):
            top = target.split(".")[0]
            if top in FORBIDDEN_IN_PURE and top not in exempt:
                problems.append(f"{name} imports {target}")
    assert not problems, "\n".join(problems)


def test_raft_and_state_are_independent() -> None:
    for path in modules():
        name = module_name(path)
        for target in imports_of(path):
            if name.startswith("raft") and target.startswith("raftkv.state"):
                raise AssertionError(f"{name} imports {target}")
            if name.startswith("state") and target.startswith("raftkv.raft"):
                raise AssertionError(f"{name} imports {target}")


def test_nothing_outside_sim_imports_sim() -> None:
    for path in modules():
        name = module_name(path)
        if name.startswith("sim"):
            continue
        assert not any(t.startswith("raftkv.sim") for t in imports_of(path)), name


def test_detects_a_forbidden_import(tmp_path: Path) -> None:
    """The parser sees plain, relative and nested imports, so the rules above can fail."""
    fake = tmp_path / "mod.py"
    fake.write_text(
        "import asyncio\nfrom raftkv.state import machine\n"
        "def f():\n    from ..state import mvcc\n"
    )
    found = imports_of(fake, "raft.fake")
    assert "asyncio" in found
    assert "raftkv.state.machine" in found
    assert "raftkv.state.mvcc" in found
    assert not allowed_target("raftkv.state.mvcc", ALLOWED["raft.core"])
