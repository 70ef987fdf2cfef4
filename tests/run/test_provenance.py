"""retrievalkit.run.provenance: the header it writes, atomic writes, the dirty flag."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

from retrievalkit.run import provenance
from retrievalkit.run.provenance import (
    collect,
    default_command,
    git_commit,
    read_header,
    write_results,
)


def test_markdown_header_states_every_fact_and_keeps_the_body(tmp_path: Path) -> None:
    out = write_results(tmp_path / "r.md", "| a |\n|---|\n| 1 |", command="x --y 1", seeds=[0, 2])
    header = read_header(out)
    assert header["command"] == "x --y 1"
    assert header["seeds"] == "0, 2"
    assert header["date"].endswith("Z") and header["date"][:4].isdigit()
    assert f"torch {torch.__version__}" in header["machine"]
    assert f"{os.cpu_count()} CPUs" in header["machine"]
    assert f"{torch.get_num_threads()} threads" in header["machine"]
    assert header["commit"]
    assert out.read_text().endswith("| a |\n|---|\n| 1 |\n")


def test_json_and_text_headers_round_trip(tmp_path: Path) -> None:
    j = write_results(tmp_path / "r.json", {"rsum": [1.5, 2.5]}, command=["a", "b c"])
    data = json.loads(j.read_text())
    assert data["results"] == {"rsum": [1.5, 2.5]}
    assert read_header(j)["command"] == "a 'b c'"
    assert "seeds" not in read_header(j)
    t = write_results(tmp_path / "r.tsv", "x\t1\n", command="c", seeds=[3])
    assert read_header(t)["seeds"] == "3"
    assert t.read_text().endswith("x\t1\n")


def test_a_file_without_header_is_refused_by_name(tmp_path: Path) -> None:
    plain = tmp_path / "hand.md"
    plain.write_text("| edited | by hand |\n")
    with pytest.raises(ValueError, match="hand.md:1"):
        read_header(plain)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "r.md"
    write_results(target, "old", command="c")
    with pytest.raises(TypeError):
        write_results(target, {"not": "text"}, command="c")
    assert target.read_text().endswith("old\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.md"]


def test_an_interrupted_write_leaves_the_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "r.md"
    write_results(target, "old", command="c")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(provenance.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_results(target, "new", command="c")
    assert target.read_text().endswith("old\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.md"]


def _git(repo: Path, *words: str) -> None:
    subprocess.run(["git", "-C", str(repo), *words], check=True, capture_output=True)


def test_commit_is_marked_dirty_for_source_changes_not_results(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "new.md").write_text("r\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "new_script.py").write_text("y = 2\n")
    assert git_commit(tmp_path) == f"{head} (dirty)"
    (tmp_path / "new_script.py").unlink()
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == f"{head} (dirty)"


def test_commit_outside_git_says_so(tmp_path: Path) -> None:
    assert git_commit(tmp_path).startswith("unknown")


def test_default_command_shows_scripts_relative_to_the_source_root() -> None:
    script = provenance.SOURCE_ROOT / "benchmarks" / "eval.py"
    assert default_command([str(script), "--quick"]) == "python benchmarks/eval.py --quick"
    main = provenance.SOURCE_ROOT / "retrievalkit" / "__main__.py"
    assert default_command([str(main), "compare", "a b"]) == "retrievalkit compare 'a b'"


def test_collect_without_command_uses_this_process() -> None:
    assert collect().command == default_command()
    assert collect().seeds is None


def test_printed_output_becomes_the_results_file(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.md"
    with provenance.stdout_to_results(out, command="python b.py", seeds=[1]):
        print("| x |\n|---|\n| 2 |")
    assert "| 2 |" in capsys.readouterr().out
    assert read_header(out) | {"date": "", "machine": "", "commit": ""} == {
        "command": "python b.py",
        "seeds": "1",
        "date": "",
        "machine": "",
        "commit": "",
    }
    assert out.read_text().endswith("| x |\n|---|\n| 2 |\n")


def test_a_failing_run_writes_no_results_file(tmp_path: Path) -> None:
    out = tmp_path / "bench.md"
    with pytest.raises(RuntimeError), provenance.stdout_to_results(out, command="c"):
        print("half a table")
        raise RuntimeError("stopped")
    assert not out.exists()
    with provenance.stdout_to_results(None):
        print("printed only")
    assert not out.exists()


def test_a_commands_stdout_is_recorded_with_its_command(tmp_path: Path) -> None:
    import sys

    out = tmp_path / "rec.md"
    code = "print('| a |'); print('|---|'); print('| 3 |')"
    assert (
        provenance.main(["--out", str(out), "--seeds", "0", "1", "--", sys.executable, "-c", code])
        == 0
    )
    header = read_header(out)
    assert shlex.split(header["command"]) == [sys.executable, "-c", code]
    assert header["seeds"] == "0, 1"
    assert out.read_text().endswith("| a |\n|---|\n| 3 |\n")
    failing = [sys.executable, "-c", "print('partial'); raise SystemExit(3)"]
    assert provenance.main(["--out", str(tmp_path / "no.md"), "--", *failing]) == 3
    assert not (tmp_path / "no.md").exists()
