"""The simulator stays deterministic by construction: no clock, I/O or thread modules, ``random``
only for ``random.Random``, and no ``hash()`` calls (string hashing is salted per process)."""

from __future__ import annotations

import ast
from pathlib import Path

SIM = Path(__file__).resolve().parents[2] / "raftkv" / "sim"
FORBIDDEN = {"asyncio", "time", "os", "socket", "threading", "subprocess", "datetime"}
ALLOWED_RAFTKV = ("raftkv.replica", "raftkv.raft", "raftkv.state", "raftkv.errors", "raftkv.sim")


def sim_modules() -> list[Path]:
    paths = sorted(SIM.glob("*.py"))
    assert len(paths) >= 7, paths
    return paths


def test_no_forbidden_imports_and_only_allowed_raftkv_modules() -> None:
    problems = []
    for path in sim_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN:
                    problems.append(f"{path.name} imports {name}")
                if name.startswith("raftkv") and not name.startswith(ALLOWED_RAFTKV):
                    problems.append(f"{path.name} imports {name}")
                if name == "random" and isinstance(node, ast.ImportFrom):
                    problems.append(f"{path.name}: from random import ...")
    assert not problems, problems


def test_random_is_used_only_for_random_Random_and_hash_never() -> None:
    problems = []
    for path in sim_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "random"
                and node.attr != "Random"
            ):
                problems.append(f"{path.name}:{node.lineno} random.{node.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hash":
                problems.append(f"{path.name}:{node.lineno} hash()")
    assert not problems, problems
