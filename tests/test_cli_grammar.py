"""One grammar for every command (README "The command line"): the same option names
and defaults, one-line usage errors with exit 2, and a parser that imports no torch."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from retrievalkit.cli import build_parser, main
from retrievalkit.commands.options import split_names
from retrievalkit.errors import USER_ERROR_EXIT

RUNS_A_MODEL = {"train", "compare", "eval", "embed", "index build", "search", "serve", "demo"}
TAKES_OVERRIDES = {"train", "compare", "eval", "index build", "demo", "data info", "data show"}
POSITIONAL = {
    "train": ["RECIPE"],
    "compare": ["RECIPE"],
    "eval": ["RUN"],
    "embed": ["RUN"],
    "index build": ["RUN"],
    "export": ["RUN"],
    "search": ["INDEX"],
    "serve": ["INDEX"],
}


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every leaf command's parser by its name, e.g. ``"index build"``."""
    found = {}

    def walk(parser: argparse.ArgumentParser, words: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[" ".join(words)] = parser
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, [*words, name])

    walk(build_parser(), [])
    return found


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings if a.help != argparse.SUPPRESS}


def test_building_the_parser_imports_no_torch():
    code = (
        "import sys, retrievalkit.cli as cli; cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'numpy', 'PIL', 'yaml') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip() == "[]"


def test_every_command_speaks_the_same_options():
    found = commands()
    assert set(POSITIONAL) | RUNS_A_MODEL | TAKES_OVERRIDES <= set(found)
    for name, parser in found.items():
        opts = options(parser)
        assert "--no-progress" in opts, name
        assert "--splits" not in opts and "-o" not in opts and "--data" not in opts, name
        if name in RUNS_A_MODEL or name == "export":
            assert opts["--device"].default == "auto", name
        if name in TAKES_OVERRIDES:
            assert opts["--set"].dest == "overrides", name
        if "--split" in opts:
            assert opts["--split"].nargs == "+", name
        positional = [a.metavar for a in parser._actions if not a.option_strings]
        assert positional[: len(POSITIONAL.get(name, []))] == POSITIONAL.get(name, []), name


def test_split_takes_a_list_spaced_or_with_commas():
    parse = argparse.Namespace
    assert split_names(parse(split=["train", "val,test"])) == ["train", "val", "test"]
    assert split_names(parse(split=None), ["test"]) == ["test"]


@pytest.mark.parametrize(
    "argv",
    [
        ["index", "build"],
        ["index", "build", "somewhere"],
        ["search", "somewhere", "--bogus", "--text", "x"],
        ["train"],
        ["eval", "run", "--device"],
        ["nosuchcommand"],
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == USER_ERROR_EXIT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: retrievalkit") and "--help" in err[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "emoji_vsepp", "--set", "stages.9.epochs=1"],
            "error: --set 'stages.9.epochs=1': stages is a list of 2 items, no index '9' "
            "(use 0..1)",
        ),
        (
            ["train", "emoji_vsepp", "--set", "optim"],
            "error: --set 'optim': expected key.path=value",
        ),
        (
            ["index", "build", "run", "--out", "x", "--set", "optim.lr=1"],
            "error: --set 'optim.lr=1': index build takes data options only, "
            "data.options.KEY=VALUE",
        ),
        (["search", "x", "--text", "hi", "--device", "gpu"], "error: device 'gpu': expected "),
        (["bench", "--sizes", "1"], "error: --sizes must be >= 2"),
        (["compare", "x", "--seeds", "0", "--out", "o"], "error: --seeds must be at least 1"),
    ],
)
def test_a_bad_value_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == USER_ERROR_EXIT
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(message), err


def test_the_old_spellings_still_work_and_say_so(monkeypatch, capsys):
    import retrievalkit.commands.data as data
    import retrievalkit.commands.index as index

    seen = {}
    monkeypatch.setattr(data, "run_info", lambda args: seen.update(data=args.overrides))
    monkeypatch.setattr(index, "run_build", lambda args: seen.update(index=args))
    main(["data", "info", "emoji", "-o", "size=32", "--set", "seed=1"])
    main(["index", "build", "r", "--out", "o", "--data", "root=/d", "--splits", "train,val"])
    assert seen["data"] == ["size=32", "seed=1"]
    assert seen["index"].overrides == ["data.options.root=/d"]
    assert split_names(seen["index"]) == ["train", "val"]
    assert "note: -o is deprecated; use --set KEY=VALUE" in capsys.readouterr().err


def test_no_library_bars_when_stderr_is_not_a_terminal(monkeypatch):
    import retrievalkit.commands.bench as bench

    seen = {}

    def record(args):
        seen.update(
            {v: os.environ.get(v) for v in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
        )
        return 0

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(bench, "run", record)
    assert main(["bench"]) == 0  # pytest's stderr is not a terminal
    assert seen == {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    assert "TQDM_DISABLE" not in os.environ  # restored after the command


def test_search_json_is_one_line_per_query_for_every_query_kind(monkeypatch, capsys, tmp_path):
    import retrievalkit.search as search_engine
    from retrievalkit.search import SearchHit

    class Engine:
        def __init__(self, directory, device):
            pass

        def search_text(self, queries, k, **options):
            return [[SearchHit(1, 0.5, "k", "c")] for _ in queries]

        def search_image(self, paths, k, **options):
            return [[SearchHit(1, 0.5, "k", "c")] for _ in paths]

    monkeypatch.setattr(search_engine, "SearchEngine", Engine)
    queries = tmp_path / "q.txt"
    queries.write_text("a\nb\n")
    expected_hits = [{"rank": 1, "score": 0.5, "key": "k", "caption": "c"}]
    for query, labels in (
        (["--text", "red heart"], ["red heart"]),
        (["--queries", str(queries)], ["a", "b"]),
        (["--image", str(queries)], [str(queries)]),
    ):
        assert main(["search", str(tmp_path), *query, "--json", "--device", "cpu"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert lines == [{"query": label, "hits": expected_hits} for label in labels]
