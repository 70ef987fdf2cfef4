"""Suite-wide fixtures and hook.

Fixtures: ``tiny_cross_modal`` and ``tiny_metric`` make the tiny synthetic recipes of
``tests/tiny.py`` that the end-to-end tests train in seconds
(``tiny_cross_modal(epochs=2, data={"batch_size": 16})``: nested mappings are merged,
other values replaced); ``write_recipe`` writes one as YAML.

Hook: ``--skip-report FILE`` records every test that did not run.

CI (``.ci/run``) passes it and then checks the file against ``tests/skip_allowlist.txt``
with ``.ci/check_skips.py``: a skip (or xfail) that is not allow-listed with a reason
fails CI, so a missing dependency or data package cannot turn tests off silently.
Skips at collection (a module's ``pytest.importorskip``) are recorded under the
module's node id; skips at set-up or in the test body under the test's node id.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import tiny

Recipe = Callable[..., dict[str, Any]]


@pytest.fixture(scope="session")
def tiny_cross_modal() -> Recipe:
    """``(**changes) -> recipe``: 48 synthetic shapes of 16 px with captions, small CNN +
    GRU into 8 dimensions, VSE, one epoch."""
    return tiny.cross_modal


@pytest.fixture(scope="session")
def tiny_metric() -> Recipe:
    """``(**changes) -> recipe``: 192 synthetic shapes in classes, P x K = 4 x 4, small
    CNN into 8 dimensions, multi-similarity, one epoch, MAP@R."""
    return tiny.metric


@pytest.fixture(scope="session")
def write_recipe() -> Callable[[Path, dict[str, Any]], Path]:
    """``(path, recipe) -> path``: the recipe written as YAML."""

    def write(path: Path, recipe: dict[str, Any]) -> Path:
        path.write_text(yaml.safe_dump(recipe))
        return path

    return write


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--skip-report",
        type=Path,
        default=None,
        help="write the outcome counts and every skipped / xfailed test id (JSON) here",
    )


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    if getattr(report, "wasxfail", None) is not None:
        return f"xfail: {report.wasxfail}"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipRecorder:
    """Counts outcomes and keeps ``{nodeid, reason}`` of every skip; writes them at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.outcomes: dict[str, int] = {}
        self.skipped: list[dict[str, str]] = []

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.skipped:
            self.skipped.append({"nodeid": report.nodeid, "reason": _reason(report)})
        elif report.failed:
            self.outcomes["collection errors"] = self.outcomes.get("collection errors", 0) + 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            xfail = getattr(report, "wasxfail", None) is not None
            kind = "xfailed" if xfail else report.outcome
            self.outcomes[kind] = self.outcomes.get(kind, 0) + 1
        if report.skipped:
            self.skipped.append({"nodeid": report.nodeid, "reason": _reason(report)})

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state: dict[str, Any] = {
            "exitstatus": int(exitstatus),
            "outcomes": self.outcomes,
            "skipped": self.skipped,
        }
        self.path.write_text(json.dumps(state, indent=2) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("--skip-report")
    if path is not None:
        config.pluginmanager.register(SkipRecorder(path), "retrievalkit-skip-recorder")
