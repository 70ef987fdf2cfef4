"""The CLI prints bad input as one line ``error: <message>`` (exit 2), keeps the
traceback of real bugs, and shows every traceback under ``--debug``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from retrievalkit.cli import main
from retrievalkit.errors import USER_ERROR_EXIT, UserError
from retrievalkit.run.config import ConfigError


def test_user_error_is_one_line_without_traceback(tmp_path, capsys):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("name: x\ntask: [cross\n")
    assert main(["train", str(recipe), "--out", str(tmp_path / "run")]) == USER_ERROR_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {recipe}:3:1: not valid YAML: expected ',' or ']', but got '<stream end>'"
    ]


def test_debug_shows_the_traceback_of_a_user_error(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("name: x\ntask: [cross\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        main(["--debug", "train", str(recipe)])


def test_a_bug_keeps_its_traceback(monkeypatch):
    import retrievalkit.commands.search as search

    def broken(args):
        raise ZeroDivisionError("a bug, not bad input")

    monkeypatch.setattr(search, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["search", "somewhere", "--text", "hi"])
    assert not issubclass(ZeroDivisionError, UserError)


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_query_is_an_error(tmp_path, capsys, text):
    assert main(["search", str(tmp_path), "--text", text]) == USER_ERROR_EXIT
    assert capsys.readouterr().err == "error: --text: empty query (expected some text)\n"


def test_the_installed_entry_point_prints_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "retrievalkit", "search", str(tmp_path / "none"), "--text", "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == USER_ERROR_EXIT
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'none'}: not an index directory (no retrieval.json); "
        "make one with `retrievalkit index build RUN --out DIR`"
    ]
