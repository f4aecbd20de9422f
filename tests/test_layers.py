"""The layers' rules, checked on the source: data flows one way, and serving needs nothing
that only training uses."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# features -> training -> models -> serving; experiments train through models, below serving
ORDER = ("features", "training", "models", "experiments", "serving")
TRAINING_ONLY = ("optuna", "matplotlib", "shap", "pyreadr")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", ORDER)
def test_a_lower_layer_never_imports_a_higher_one(layer):
    higher = set(ORDER[ORDER.index(layer) + 1 :])
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imports(p) & higher)
        for p in (ROOT / layer).rglob("*.py")
        if _imports(p) & higher
    }
    assert offenders == {}


BLOCKER = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {TRAINING_ONLY!r}:
            raise ImportError("training-only module imported by serving: " + name)
sys.meta_path.insert(0, Block())
"""


def python(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_serving_runs_without_the_training_only_dependencies():
    """Every serving module imports, and the service app assembles, with optuna, matplotlib,
    shap and pyreadr unimportable: a serving install does without the `train` extra."""
    script = BLOCKER + (
        "import serving.cli.main, serving.api.app, serving.batch.runner, serving.state.service\n"
        "import serving.batch.roster_io\n"
        "import models.registry, models.pyfunc, models.tracking\n"
        "from serving.batch.histogram import histogram_svg\n"
        "from serving.batch.tracking import log_batch_run\n"
        "models.tracking.configure()\n"
        "print('ok')\n"
    )
    r = python(script)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_a_roster_mistake_is_reported_before_the_model_stack_is_imported():
    """Checking a roster job's settings imports neither LightGBM nor MLflow, so a mistake
    fails in a moment."""
    script = (
        "import sys\n"
        "from serving.batch.job import RosterJob\n"
        "from serving.cli.main import app\n"
        "print(sorted({'lightgbm', 'mlflow'} & set(sys.modules)))\n"
    )
    r = python(script)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
