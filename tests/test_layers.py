"""The layer rules of docs/architecture.md, as import-linter contracts (`.importlinter`): routing's
packages import only downwards, the site sits above the admin and history above the proxy, and no
modules or packages import each other in a circle."""
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")  # import-linter's command, in the venv


def test_the_import_contracts_are_kept():
    checked = subprocess.run([LINT_IMPORTS], cwd=ROOT, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Contracts: 3 kept, 0 broken." in checked.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_a_contract(tmp_path):
    """The check is real: the same contracts on a copy where routing.core imports routing.api fail."""
    import shutil

    copy = tmp_path / "tree"
    for package in ("routing", "adminui", "shimsite"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", copy / ".importlinter")
    errors = copy / "routing" / "core" / "errors.py"
    errors.write_text(errors.read_text() + "\nfrom routing.api import views  # noqa\n")
    checked = subprocess.run([LINT_IMPORTS], cwd=copy, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(copy)})
    assert checked.returncode != 0
    assert "routing.core.errors -> routing.api.views" in checked.stdout
