"""CI's skip check (tests/conftest.py --skip-report + .ci/check_skips.py) on small suites."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / ".ci" / "check_skips.py"

SUITE = """
import pytest

def test_runs():
    assert 1 + 1 == 2

@pytest.mark.skipif(True, reason="needs CUDA")
def test_cuda():
    pass

def test_dependency():
    pytest.importorskip("a_module_that_is_not_installed_anywhere")
"""


def run_suite(tmp_path: Path, body: str) -> dict:
    """Run pytest on ``body`` with the suite's conftest; return the skip report."""
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_small.py").write_text(body)
    report = tmp_path / "skips.json"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
           str(tmp_path), "--skip-report", str(report), str(tmp_path)]  # fmt: skip
    # the copied conftest imports the suite's helpers (tests.tiny): the repository on the path
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env)
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: every test skipped
    return json.loads(report.read_text())


def check(tmp_path: Path, allowlist: str) -> subprocess.CompletedProcess:
    (tmp_path / "allow.txt").write_text(allowlist)
    cmd = [sys.executable, str(CHECK), str(tmp_path / "skips.json"), str(tmp_path / "allow.txt")]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_report_names_every_skip_with_its_reason(tmp_path):
    report = run_suite(tmp_path, SUITE)
    assert report["outcomes"] == {"passed": 1, "skipped": 2}
    reasons = {s["nodeid"]: s["reason"] for s in report["skipped"]}
    assert reasons["test_small.py::test_cuda"] == "needs CUDA"
    assert "a_module_that_is_not_installed_anywhere" in reasons["test_small.py::test_dependency"]


def test_an_unlisted_skip_fails_and_a_listed_one_passes(tmp_path):
    run_suite(tmp_path, SUITE)
    cuda_only = check(tmp_path, "test_small.py::test_cuda | needs CUDA\n")
    assert cuda_only.returncode == 1
    assert "NOT ALLOWED): test_small.py::test_dependency" in cuda_only.stdout
    both = check(
        tmp_path, "# comment\ntest_small.py::test_cuda | CUDA\ntest_small.py::test_dep* | x\n"
    )
    assert both.returncode == 0, both.stdout


def test_a_module_level_skip_is_recorded_and_fails(tmp_path):
    report = run_suite(tmp_path, 'import pytest\npytest.importorskip("no_such_mod_xyz")\n')
    assert [s["nodeid"] for s in report["skipped"]] == ["test_small.py"]
    assert check(tmp_path, "").returncode == 1


def test_an_entry_without_reason_and_a_missing_report_fail(tmp_path):
    run_suite(tmp_path, "def test_ok():\n    pass\n")
    result = check(tmp_path, "test_small.py::test_ok\n")
    assert result.returncode == 1 and "allow.txt:1: expected" in result.stdout
    (tmp_path / "skips.json").unlink()
    assert check(tmp_path, "").returncode == 1


def test_the_shipped_allowlist_parses_and_gives_each_entry_a_reason():
    cmd = [sys.executable, "-c",
           "import runpy,sys; m=runpy.run_path(sys.argv[1]); "
           "print(len(m['read_allowlist'](__import__('pathlib').Path(sys.argv[2]))))",
           str(CHECK), str(ROOT / "tests" / "skip_allowlist.txt")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert int(out) >= 1
