"""``retrievalkit bench``: times the chosen losses and writes a row per (loss, B)."""

import json

from retrievalkit.bench import fmt
from retrievalkit.cli import main


def test_bench_prints_and_writes_rows(tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["bench", "--sizes", "8", "16", "--reps", "1", "--losses", "contrastive", "smooth_ap"]
    assert main([*args, "--json", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| ")]
    assert len(lines) == 1 + 4  # header + 2 sizes x 2 losses
    rows = json.loads(out.read_text())
    assert [(r["loss"], r["B"]) for r in rows] == [
        ("contrastive", 8),
        ("smooth_ap", 8),
        ("contrastive", 16),
        ("smooth_ap", 16),
    ]
    assert all(r["ours"] > 0 and r["floor"] > 0 for r in rows)


def test_bad_arguments_and_cell_format(capsys):
    assert main(["bench", "--sizes", "1"]) == 2
    assert "--sizes must be >= 2" in capsys.readouterr().err
    assert fmt(None) == "-" and fmt(0.0123, " s") == "12.30 ms" and fmt(1.5, " s") == "1.500 s"
