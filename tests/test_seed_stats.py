"""benchmarks/seed_stats.py: per-seed scores read from kept files, Welch / paired p."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from retrievalkit.run.provenance import read_header

stats = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "seed_stats.py"))

RUNS = """# Comparison: a, b

## Runs

| recipe | seed | map_at_r | wall (s) | resumed |
|---|---|---|---|---|
| a | 0 | 1.00 | 10 | no |
| a | 1 | 2.00 | 10 | no |
| a | 2 | 3.00 | 10 | no |
| b | 0 | 4.00 | 10 | no |
| b | 1 | 5.00 | 10 | no |
| b | 2 | 6.50 | 10 | no |
"""


def test_comparison_runs_table_is_read_per_seed(tmp_path: Path) -> None:
    (tmp_path / "c.md").write_text(RUNS)
    scores = stats["read_comparison_md"](tmp_path / "c.md")
    assert scores["a"] == {0: {"map_at_r": 1.0}, 1: {"map_at_r": 2.0}, 2: {"map_at_r": 3.0}}
    assert scores["b"][2] == {"map_at_r": 6.5}


def test_welch_and_paired_p_and_the_written_file(tmp_path: Path) -> None:
    (tmp_path / "c.md").write_text(RUNS)
    out = tmp_path / "stats.md"
    argv = ["--source", str(tmp_path / "c.md"), "--pair", "a", "b", "--metric", "map_at_r"]
    assert stats["main"]([*argv, "--out", str(out)]) == 0
    test = stats["compare"](stats["read_comparison_md"](tmp_path / "c.md"), "a", "b", "map_at_r")
    # Welch by hand: means 2 and 5.1667, variances 1 and 1.5833, n = 3 each
    se = ((1 / 3) + (1.583333 / 3)) ** 0.5
    assert test.welch_t == pytest.approx((2 - 5.166667) / se, rel=1e-4)
    assert test.welch_df == pytest.approx(
        (1 / 3 + 1.583333 / 3) ** 2 / ((1 / 9 + 2.506944 / 9) / 2), rel=1e-3
    )
    assert 0.01 < test.welch_p < 0.05 and test.paired_p is not None
    text = out.read_text()
    assert "established (p < 0.05)" in text and "| a | 2 | 3.00 |" in text
    assert read_header(out)["seeds"] == "0, 1, 2"


def test_runs_json_and_unknown_recipe(tmp_path: Path) -> None:
    runs = [{"recipe": "plain_loop", "seed": s, "test": {"map_at_r": 30.0 + s}} for s in (0, 1)]
    (tmp_path / "p.json").write_text(json.dumps({"results": {"runs": runs}}))
    scores = stats["read_runs_json"](tmp_path / "p.json")
    assert scores["plain_loop"][1]["map_at_r"] == 31.0
    with pytest.raises(ValueError, match="no recipe 'zzz'"):
        stats["compare"](scores, "plain_loop", "zzz", "map_at_r")


SEED_COLUMNS = """runs: r0, r1, r2

| test split | seed run 0 | seed run 1 | seed run 2 | mean ± std |
|---|---|---|---|---|
| rsum | 218.9 | 208.6 | 218.6 | 215.4 ± 5.8 |
| t2i R@5, noto view | 41.0 | 41.2 | 42.0 | 41.4 ± 0.5 |

Search, TEST part
"""


def test_seed_column_table_is_read_under_the_file_stem(tmp_path: Path) -> None:
    (tmp_path / "demo_3seeds.md").write_text(SEED_COLUMNS)
    scores = stats["read_source"](tmp_path / "demo_3seeds.md")
    assert scores == {
        "demo_3seeds": {
            0: {"rsum": 218.9, "t2i R@5, noto view": 41.0},
            1: {"rsum": 208.6, "t2i R@5, noto view": 41.2},
            2: {"rsum": 218.6, "t2i R@5, noto view": 42.0},
        }
    }
    (tmp_path / "bad.md").write_text(SEED_COLUMNS.replace("208.6", "n/a"))
    with pytest.raises(ValueError, match=r"bad.md:5: expected a number"):
        stats["read_source"](tmp_path / "bad.md")
