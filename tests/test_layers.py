"""The layer map holds: imports run downward only, and the leaderboard's data side stays light."""
import ast
import subprocess
from pathlib import Path

import pytest

from conftest import PYTHON, python_env

ROOT = Path(__file__).resolve().parents[1]
# Each package and the packages it may import (bottom first). See docs/architecture.md.
ALLOWED = {
    "registries": set(),
    "runstore": set(),
    "renderers": {"registries"},
    "models": {"registries"},
    "trainer": {"models", "registries"},
    "harness": {"registries", "runstore", "renderers", "models", "trainer"},
    "leaderboard": {"runstore", "harness"},  # harness.metrics only (pure numpy), checked below
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0] if not node.module.startswith("harness.metrics")
                    else "harness.metrics")
    return out


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_runs_back_up(package):
    own = set(ALLOWED)
    bad = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        found = {m if m != "harness.metrics" else "harness" for m in _imports(path)} & own
        wrong = found - ALLOWED[package] - {package}
        if package == "leaderboard" and "harness" in found:
            other = {m for m in _imports(path) if m == "harness"}
            wrong |= other  # only harness.metrics is allowed
        if wrong:
            bad[str(path.relative_to(ROOT))] = sorted(wrong)
    assert not bad, f"imports that run back up: {bad}"


def _heavy_modules_loaded_by(modules: str) -> str:
    """What of Sacred, torch and open_clip importing ``modules`` (comma-separated) loads, in a fresh
    interpreter."""
    code = (f"import sys, {modules}; "
            "print(sorted(m for m in ('sacred', 'torch', 'open_clip') if m in sys.modules))")
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=python_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_leaderboard_data_modules_load_neither_sacred_nor_torch():
    assert _heavy_modules_loaded_by("leaderboard.queries, leaderboard.access, runstore") == "[]"


def test_evaluation_aggregation_and_photo_records_load_neither_sacred_nor_torch():
    """The run record's figures (harness.metrics.blocks, the protocols' metrics) and the photo
    queries' records and crops (harness.data.photos) are testable and reusable without a model."""
    assert _heavy_modules_loaded_by("harness.metrics.blocks, harness.metrics.protocols, "
                                    "harness.data.photos") == "[]"


def test_no_library_file_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for pkg in ALLOWED for p in (ROOT / pkg).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, f"split these by job: {long}"


def test_setup_installs_every_layer():
    """A package missing from setup.py works from the checkout and breaks for every installed user."""
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    missing = [pkg for pkg in ALLOWED if f'"{pkg}", "{pkg}.*"' not in text]
    assert not missing, f"add to setup.py packages: {missing}"
