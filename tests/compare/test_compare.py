"""``retrievalkit compare``: runs every (recipe, seed), skips finished runs, tabulates."""

import json

import pytest
import yaml

from retrievalkit.cli import main
from retrievalkit.compare.plan import plan_runs
from retrievalkit.compare.report import markdown_table
from retrievalkit.compare.stats import Stat, summarize
from retrievalkit.run.config import ConfigError, load_config
from retrievalkit.run.provenance import read_header


def test_stat_is_mean_and_sample_std():
    stat = Stat.of([1.0, 2.0, 3.0])
    assert stat.mean == 2.0 and stat.std == pytest.approx(1.0) and stat.n == 3
    assert Stat.of([5.0]).std == 0.0
    assert stat.format() == "2.0 ± 1.0"
    assert Stat.of([5.0]).format() == "5.0"  # one seed: no spread to show


def test_table_bolds_the_best_mean():
    records = [
        {"seed": s, "wall_s": 10.0 + s, "test": {"recall@1": r, "map_at_r": m}}
        for s, r, m in ((0, 50.0, 20.0), (1, 52.0, 22.0))
    ]
    worse = [{**r, "test": {"recall@1": 40.0, "map_at_r": 30.0}} for r in records]
    a = summarize("a", records, ["recall@1", "map_at_r"])
    b = summarize("b", worse, ["recall@1", "map_at_r"])
    table = markdown_table([a, b], ["recall@1", "map_at_r"])
    rows = table.splitlines()
    assert rows[2] == "| a | 0,1 | **51.0 ± 1.4** | 21.0 ± 1.4 | 10 ± 1 |"
    assert rows[3] == "| b | 0,1 | 40.0 ± 0.0 | **30.0 ± 0.0** | 10 ± 1 |"


def test_two_recipes_with_one_name_are_refused(tmp_path, tiny_metric):
    for file in ("a.yaml", "b.yaml"):
        (tmp_path / file).write_text(
            yaml.safe_dump(tiny_metric(name="same", losses=[{"name": "contrastive"}]))
        )
    with pytest.raises(ConfigError, match="both named 'same'"):
        plan_runs([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")], [0], [], tmp_path)


def test_compare_trains_each_seed_then_skips_finished_runs(tmp_path, capsys, tiny_metric):
    for name, loss in (("tiny_ms", "multi_similarity"), ("tiny_contrastive", "contrastive")):
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump(tiny_metric(name=name, losses=[{"name": loss}]))
        )
    out = tmp_path / "cmp"
    argv = ["compare", str(tmp_path / "tiny_ms.yaml"), str(tmp_path / "tiny_contrastive.yaml")]
    argv += ["--seeds", "2", "--set", "optim.lr=0.002", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    for name in ("tiny_ms", "tiny_contrastive"):
        for seed in (0, 1):
            record = json.loads((out / name / f"seed{seed}" / "metrics.json").read_text())
            assert record["seed"] == seed and record["wall_s"] > 0
            config = yaml.safe_load((out / name / f"seed{seed}" / "config.yaml").read_text())
            assert config["seed"] == seed and config["optim"]["lr"] == 0.002
    first = json.loads((out / "tiny_ms/seed1/metrics.json").read_text())
    # the two seeds really differ (the seed reaches the model and the sampler)
    second = json.loads((out / "tiny_ms/seed0/metrics.json").read_text())
    assert first["test"]["map_at_r"] != second["test"]["map_at_r"]
    table = (out / "comparison.md").read_text()
    assert "| tiny_ms | 0,1 |" in table and "| tiny_contrastive | 0,1 |" in table
    assert "--seeds 2 --set optim.lr=0.002" in table
    assert read_header(out / "comparison.md")["seeds"] == "0, 1"
    summary = json.loads((out / "comparison.json").read_text())["results"]
    mean = (first["test"]["recall@1"] + second["test"]["recall@1"]) / 2
    assert summary["tiny_ms"]["recall@1"]["mean"] == pytest.approx(mean)
    assert (out / "comparison.png").stat().st_size > 1000

    # a second call trains nothing (finished runs are skipped): same records
    (out / "tiny_ms/seed1/checkpoints").rename(out / "moved")  # would break a retrain
    capsys.readouterr()
    assert main(argv) == 0
    assert json.loads((out / "tiny_ms/seed1/metrics.json").read_text()) == first


def test_a_run_locked_by_a_live_process_is_left_alone(tmp_path, tiny_metric):
    import os

    from retrievalkit.compare.execute import LOCK_FILE, claim_run, run_all

    (tmp_path / "r.yaml").write_text(
        yaml.safe_dump(tiny_metric(name="r", losses=[{"name": "contrastive"}]))
    )
    runs = plan_runs([str(tmp_path / "r.yaml")], [0, 1], [], tmp_path / "out")
    runs[0].run_dir.mkdir(parents=True)
    (runs[0].run_dir / LOCK_FILE).write_text(str(os.getppid()))  # a live process
    (runs[1].run_dir).mkdir(parents=True)
    (runs[1].run_dir / LOCK_FILE).write_text("999999999")  # a process that is gone
    trained = []

    def fake_train(run, device, progress):
        assert (run.run_dir / LOCK_FILE).read_text() == str(os.getpid())
        trained.append(run.seed)
        return {"seed": run.seed, "wall_s": 1.0, "test": {"recall@1": 50.0}}

    records = run_all(runs, "cpu", progress=False, train=fake_train)
    assert trained == [1] and [r["seed"] for r in records["r"]] == [1]
    assert not (runs[1].run_dir / LOCK_FILE).exists()  # released after training
    assert not claim_run(runs[0].run_dir)


def test_variants_are_rows_of_overrides_with_their_own_runs(tmp_path, capsys, tiny_metric):
    (tmp_path / "r.yaml").write_text(
        yaml.safe_dump(tiny_metric(name="r", losses=[{"name": "contrastive"}]))
    )
    variants = tmp_path / "v.yaml"
    variants.write_text(
        "variants:\n  base: {label: as shipped}\n  slow: {set: [optim.lr=0.0001]}\n"
    )
    out = tmp_path / "cmp"
    argv = ["compare", str(tmp_path / "r.yaml"), "--seeds", "1", "--variants", str(variants)]
    argv += ["--variant", "fast", "optim.lr=0.01", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    lrs = {
        row: yaml.safe_load((out / "r" / row / "seed0" / "config.yaml").read_text())["optim"]["lr"]
        for row in ("fast", "base", "slow")
    }
    default_lr = load_config(tmp_path / "r.yaml").optim.lr  # the recipe sets none
    assert lrs == {"fast": 0.01, "base": default_lr, "slow": 0.0001}
    table = (out / "comparison.md").read_text()
    for row in ("r/fast", "r/base", "r/slow"):
        assert f"| {row} | 0 |" in table
    assert "- base (as shipped): the recipe as is" in table
    assert "- slow: `--set optim.lr=0.0001`" in table
    header = read_header(out / "comparison.md")
    assert "--variant fast optim.lr=0.01" in header["command"] and header["seeds"] == "0"

    # the same runs, tabulated from their directories (runs trained elsewhere)
    tab = tmp_path / "tab"
    dirs = [str(out / "r" / row / "seed0") for row in ("fast", "slow")]
    assert main(["compare", "--runs", *dirs, "--out", str(tab)]) == 0
    runs_table = (tab / "comparison.md").read_text().split("## Runs")[1]
    assert runs_table.count("| r | 0 |") == 2


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("rows: {}", "expected a mapping 'variants:"),
        ("variants:\n  a: {set: [lr]}", r"variants.a.set: expected a list of 'key.path=value'"),
        ("variants:\n  a: {sets: []}", "variants.a: expected keys 'set'"),
        ("variants:\n  a b: {}", "variant name 'a b'"),
    ],
)
def test_a_bad_variants_file_names_the_key(tmp_path, text, match):
    from retrievalkit.compare.plan import load_variants

    (tmp_path / "v.yaml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_variants(tmp_path / "v.yaml")


def test_compare_needs_recipes_or_runs(tmp_path, capsys):
    assert main(["compare", "--out", str(tmp_path)]) == 2
    assert "give at least one RECIPE" in capsys.readouterr().err
