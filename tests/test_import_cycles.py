"""The modules of src/sst import each other without a cycle (scripts/check_import_cycles)."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "scripts" / "check_import_cycles"


def run_check(src: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), str(src)], capture_output=True,
                          text=True, timeout=60)


def test_src_has_no_import_cycle():
    result = run_check(ROOT / "src" / "sst")
    assert result.returncode == 0, result.stderr
    assert "0 cycles" in result.stdout


def test_the_check_finds_a_cycle_hidden_in_a_lazy_import(tmp_path):
    pkg = tmp_path / "sst"
    (pkg / "ingest").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "ingest" / "__init__.py").write_text("")
    (pkg / "app.py").write_text("from sst.ingest import views\n")
    (pkg / "ingest" / "views.py").write_text(textwrap.dedent("""
        def handler():
            from sst.app import create_app
            return create_app
    """))
    result = run_check(pkg)
    assert result.returncode == 1
    assert "import cycle among: sst.app, sst.ingest.views" in result.stderr
