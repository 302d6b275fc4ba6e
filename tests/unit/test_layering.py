"""Layering (DESIGN section 2): ``broker.core`` and ``broker.service`` stay free of I/O stacks.

Each module is imported in a fresh interpreter, so nothing imported by another test hides a
dependency; afterwards ``aiohttp``, ``redis`` and ``sqlite3`` must not be loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAYERS = ("core", "service")
FORBIDDEN = ("aiohttp", "redis", "sqlite3")

_PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(name for name in sys.argv[2:] if name in sys.modules)))
"""


def _modules() -> list[str]:
    names: list[str] = []
    for layer in LAYERS:
        root = REPO / "broker" / layer
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    return names


MODULES = _modules()


def test_both_layers_have_modules() -> None:
    for layer in LAYERS:
        assert f"broker.{layer}" in MODULES
        assert any(name.startswith(f"broker.{layer}.") for name in MODULES), layer


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_no_io_stack(module: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, module, *FORBIDDEN],
        capture_output=True, text=True, timeout=60, cwd=str(REPO), env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"importing {module} failed:\n{done.stderr}"
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded == [], f"{module} pulls in {loaded}"


def test_probe_detects_a_forbidden_import() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, "sqlite3", *FORBIDDEN],
        capture_output=True, text=True, timeout=60, cwd=str(REPO), env=env, check=False,
    )  # fmt: skip
    assert json.loads(done.stdout) == ["sqlite3"]
