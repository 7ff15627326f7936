"""The package layers, read from the code by the project's layering tool."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "layering.py"


@pytest.mark.skipif(not TOOL.exists(), reason="../shared/tools/layering.py is not beside this checkout")
def test_layers_point_one_way_through_public_apis():
    out = subprocess.run([sys.executable, str(TOOL), str(ROOT)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "upward_edges=0 private_cross_imports=0 local_project_imports=0" in out.stdout

