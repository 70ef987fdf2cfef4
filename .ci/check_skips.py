#!/usr/bin/env python3
"""Fail when a test skipped (or xfailed) that ``tests/skip_allowlist.txt`` does not allow.

    python .ci/check_skips.py REPORT.json [ALLOWLIST]

REPORT.json is written by ``pytest --skip-report REPORT.json`` (tests/conftest.py).
ALLOWLIST (default tests/skip_allowlist.txt) holds one entry a line,
``<node id or fnmatch pattern> | <reason>``; lines starting with ``#`` are comments. An entry without
a reason is an error. Exit status 0 when every skip is allowed and at least one test
passed; 1 otherwise, listing each unallowed skip with the reason pytest gave.
Standard library only: CI runs it with any Python.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from pathlib import Path


def read_allowlist(path: Path) -> list[tuple[str, str]]:
    """``(pattern, reason)`` pairs; raises ValueError naming ``path:line`` on a bad line."""
    entries = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pattern, sep, reason = (part.strip() for part in line.partition("|"))
        if not sep or not pattern or not reason:
            raise ValueError(f"{path}:{number}: expected '<test id or pattern> | <reason>'")
        entries.append((pattern, reason))
    return entries


def unallowed(
    skipped: list[dict[str, str]], allowed: list[tuple[str, str]]
) -> list[dict[str, str]]:
    """The skips that match no allow-list pattern (a pattern matches the node id)."""
    return [s for s in skipped if not any(fnmatch.fnmatchcase(s["nodeid"], p) for p, _ in allowed)]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    report_path = Path(argv[1])
    allow_path = Path(argv[2]) if len(argv) == 3 else Path("tests/skip_allowlist.txt")
    if not report_path.exists():
        print(f"CI: no skip report at {report_path} (did pytest run with --skip-report?)")
        return 1
    report = json.loads(report_path.read_text())
    try:
        allowed = read_allowlist(allow_path)
    except (OSError, ValueError) as err:
        print(f"CI: {err}")
        return 1
    outcomes = report.get("outcomes", {})
    print("CI: outcomes " + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())))
    bad = unallowed(report.get("skipped", []), allowed)
    for skip in report.get("skipped", []):
        status = "NOT ALLOWED" if skip in bad else "allowed"
        print(f"CI: skipped ({status}): {skip['nodeid']}: {skip['reason']}")
    if bad:
        print(f"CI: {len(bad)} skip(s) not in {allow_path}; install what they need or list them")
        print("    there with a reason ('<test id> | <reason>')")
        return 1
    if not outcomes.get("passed"):
        print("CI: no test passed (none collected?)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
