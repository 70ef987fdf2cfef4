"""``duplicates`` over ``retrievalkit/`` and ``tests/`` as they are at a commit.

    python tools/duplicates_at.py COMMIT [--most 200]

Exports the two folders of COMMIT with ``git archive`` into a temporary directory and
prints what ``duplicates`` (on PATH) finds there: its count line, then its rows.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit")
    parser.add_argument("--most", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", args.commit, "retrievalkit", "tests"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        command = ["duplicates", "--repo", tmp, "--most", str(args.most), "--seconds", "300"]
        found = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    print(found.replace(tmp + "/", ""), end="")


if __name__ == "__main__":
    main()
