"""Every results file's header names a commit that HEAD contains (issue 20).

A figure that cites a commit a rebase removed cannot be reproduced from a clone of
main: the commit object is not even there. Two header styles are read:

- the provenance block that ``retrievalkit.run.provenance`` writes (Markdown
  ``> - commit: `abc1234 (dirty)` ``, JSON ``"provenance": {"commit": ...}``, text
  ``# commit: ...``), read with its own ``read_header``;
- the older ``retrievalkit compare`` tables: ``Command: `...` at commit abc1234`` in
  the first lines.

A "(dirty)" suffix is dropped (the commit is still the one checked). A results file
that names no commit at all fails too: nothing under ``results/`` is written by hand, so
every file carries the header of the script that wrote it. Exceptions are listed, one a
line with a reason, in ``tests/results_provenance_allowlist.txt`` (``<path> |
<reason>``); an entry whose file now passes is an error too, so the list only shrinks.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from retrievalkit.run.provenance import read_header

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
ALLOWLIST = ROOT / "tests" / "results_provenance_allowlist.txt"
SUFFIXES = (".md", ".json", ".txt")
COMPARE_STYLE = re.compile(r"\bat commit ([0-9a-f]{7,40})\b")
COMPARE_LINES = 6  # the compare header sits in a results file's first lines
HASH = re.compile(r"[0-9a-f]{7,40}")


def header_commit(path: Path) -> str | None:
    """The commit a results file's header names, without " (dirty)"; None without one.

    A provenance header whose commit is not a hash (``unknown (not a git checkout)``)
    is returned as written, so the caller reports it.
    """
    try:
        value = read_header(path)["commit"]
    except (ValueError, KeyError, UnicodeDecodeError):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        match = COMPARE_STYLE.search("\n".join(lines[:COMPARE_LINES]))
        return match.group(1) if match else None
    return value.removesuffix(" (dirty)").strip()


def read_allowlist(path: Path) -> dict[str, str]:
    """``path -> reason``; raises ValueError naming ``file:line`` on a bad line."""
    entries: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, reason = (part.strip() for part in line.partition("|"))
        if not sep or not name or not reason:
            raise ValueError(f"{path}:{number}: expected '<results path> | <reason>'")
        if name in entries:
            raise ValueError(f"{path}:{number}: {name} is listed twice")
        entries[name] = reason
    return entries


def git(*words: str) -> subprocess.CompletedProcess[str]:
    """``git -C ROOT words...``, output captured, never raising on a non-zero status."""
    return subprocess.run(["git", "-C", str(ROOT), *words], capture_output=True, text=True)


def in_a_git_repository() -> bool:
    """True when git is installed and the source tree is a git checkout."""
    return shutil.which("git") is not None and git("rev-parse", "--git-dir").returncode == 0


def commit_problem(commit: str) -> str | None:
    """Why ``commit`` is not one a reader of HEAD can check out, or None when it is."""
    if not HASH.fullmatch(commit):
        return f"names no commit ({commit!r})"
    if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        return f"names {commit}, which this clone does not contain (rebased away?)"
    if git("merge-base", "--is-ancestor", commit, "HEAD").returncode != 0:
        return f"names {commit}, which is not an ancestor of HEAD (rebased away?)"
    return None


def results_files() -> list[Path]:
    """Every results file a header could be in, sorted."""
    return sorted(p for p in RESULTS.rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def test_header_commit_reads_both_styles(tmp_path: Path) -> None:
    provenance = tmp_path / "a.md"
    provenance.write_text(
        "> Provenance (written by the script, not by hand)\n>\n"
        "> - command: `python x.py`\n> - commit: `abc1234 (dirty)`\n> - date: `d`\n\n# T\n"
    )
    compare = tmp_path / "b.md"
    compare.write_text("# Comparison: r\n\nCommand: `retrievalkit compare r` at commit 0568329\n")
    as_json = tmp_path / "c.json"
    as_json.write_text('{"provenance": {"command": "c", "commit": "deadbee"}, "results": {}}')
    plain = tmp_path / "d.md"
    plain.write_text("| a | b |\n|---|---|\n| 1 | 2 |\n\nsee commit 1234567 at commit\n")
    unknown = tmp_path / "e.txt"
    unknown.write_text("# command: c\n# commit: unknown (not a git checkout)\n\nbody\n")
    assert header_commit(provenance) == "abc1234"
    assert header_commit(compare) == "0568329"
    assert header_commit(as_json) == "deadbee"
    assert header_commit(plain) is None
    assert header_commit(unknown) == "unknown (not a git checkout)"


def test_allowlist_lines_are_checked(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("# comment\n\nresults/a.md | training run at a rebased commit\n")
    assert read_allowlist(good) == {"results/a.md": "training run at a rebased commit"}
    bad = tmp_path / "bad.txt"
    bad.write_text("results/a.md\n")
    with pytest.raises(ValueError, match=r"bad\.txt:1: expected"):
        read_allowlist(bad)


def test_results_headers_name_commits_on_head() -> None:
    if not in_a_git_repository():
        pytest.skip("no git repository (e.g. a source tarball): commit ancestry cannot be checked")
    allowed = read_allowlist(ALLOWLIST)
    named = {path.relative_to(ROOT).as_posix(): header_commit(path) for path in results_files()}
    found = sum(commit is not None for commit in named.values())
    assert found >= 10, f"only {found} results headers found: is the parser broken?"
    problems = {
        name: "has no header naming a commit" if commit is None else commit_problem(commit)
        for name, commit in named.items()
    }
    bad = [f"{name}: {why}" for name, why in problems.items() if why and name not in allowed]
    stale = [name for name in allowed if not problems.get(name)]
    shallow = git("rev-parse", "--is-shallow-repository").stdout.strip() == "true"
    hint = " (this clone is shallow: `git fetch --unshallow` first)" if shallow else ""
    assert not bad, (
        f"results files whose header names no commit or one HEAD lacks{hint}; rerun them at "
        f"HEAD (the command is in the header) or list them with a reason in {ALLOWLIST.name}:\n"
        + "\n".join(bad)
    )
    assert not stale, (
        f"{ALLOWLIST.name} lists files that are missing or now name a commit on HEAD; "
        "remove these lines:\n" + "\n".join(stale)
    )
