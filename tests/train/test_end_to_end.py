"""Train -> checkpoint -> kill -> resume -> eval -> index -> search, on synthetic data."""

import json
from pathlib import Path

import pytest
import torch

from retrievalkit.cli import main
from retrievalkit.run.checkpoint import load_checkpoint
from retrievalkit.run.config import parse_config
from retrievalkit.training.report import finish_run
from retrievalkit.training.trainer import Trainer
from tests.tiny import END_TO_END, END_TO_END_ADVERSARIAL

# mFSR (model "mfsr"): separation, a 16-pixel generator and a caption decoder; its
# discriminators (owned by the mfsr_image term) in their own optimizer group
_MFSR_TERMS = [
    {"name": "mfsr_modality", "weight": 0.5},
    {"name": "mfsr_specific", "weight": 0.5},
    {"name": "mfsr_caption", "weight": 0.5},
    {
        "name": "mfsr_image",
        "weight": 0.5,
        "options": {"size": 16, "base_channels": 4, "pixel_weight": 1.0, "max_shift": 2},
    },
]
_MFSR_VSE = {"name": "vse", "inputs": {"img": "image.se", "txt": "text.se"}}
MFSR = {
    **END_TO_END,
    "name": "tiny_mfsr",
    "model": {
        "name": "mfsr",
        "image": {"name": "small_cnn", "widths": [8, 16], "out_dim": 16, "head": "linear"},
        "text": {"name": "gru", "word_dim": 8, "hidden_dim": 16, "head": "identity"},
        "embed_dim": 8,
        "options": {
            "joint_dim": 16,
            "generator": {"size": 16, "base_channels": 4},
            "decoder": {"word_dim": 8, "hidden_dim": 16},
        },
    },
    "optim": {
        "lr": 1e-3,
        "warmup_steps": 3,
        "groups": [
            {
                "name": "discriminators",
                "params": ["loss.mfsr_image"],
                "lr": 3e-4,
                "betas": [0.5, 0.999],
            }
        ],
    },
    "stages": [
        {
            "name": "sh",
            "epochs": 1,
            "losses": [
                {**_MFSR_VSE, "options": {"max_violation": False}},
                *_MFSR_TERMS,
            ],
        },
        {"name": "mh", "epochs": 1, "losses": [_MFSR_VSE, *_MFSR_TERMS]},
    ],
}


class Killed(Exception):
    pass


def weights(run_dir: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / name).tensors


@pytest.mark.parametrize(
    "raw", [END_TO_END, END_TO_END_ADVERSARIAL, MFSR], ids=["vse", "adversarial", "mfsr"]
)
def test_resume_after_a_kill_is_bit_for_bit(tmp_path, monkeypatch, raw):
    config = parse_config(raw)
    full = Trainer(config, tmp_path / "full", progress=False)
    full.fit()
    steps_per_epoch = full.state.step // 2

    interrupted = Trainer(config, tmp_path / "resumed", progress=False)
    original_step = Trainer.train_step
    kill_at = steps_per_epoch + 3  # mid-way through epoch 2; last checkpoint at an even step

    def dying_step(self, batch, objective):
        if self.state.step == kill_at:
            raise Killed
        return original_step(self, batch, objective)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(Killed):
        interrupted.fit()
    monkeypatch.setattr(Trainer, "train_step", original_step)
    saved = json.loads((tmp_path / "resumed/checkpoints/last/trainer_state.json").read_text())
    assert 0 < saved["batch_in_epoch"] < steps_per_epoch  # a mid-epoch checkpoint

    resumed = Trainer(config, tmp_path / "resumed", progress=False)
    resumed.fit(resume=True)
    assert resumed.state.step == full.state.step
    a, b = weights(tmp_path / "full"), weights(tmp_path / "resumed")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "full/train_log.csv").read_text() == (
        tmp_path / "resumed/train_log.csv"
    ).read_text()
    history_a = [{k: v for k, v in h.items()} for h in full.state.history]
    assert history_a == resumed.state.history

    # resuming a finished run changes nothing
    again = Trainer(config, tmp_path / "resumed", progress=False)
    again.fit(resume=True)
    assert again.state.step == full.state.step


def test_cli_train_eval_index_search(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(END_TO_END))
    run = tmp_path / "run"
    assert (
        main(
            ["train", str(recipe), "--out", str(run), "--no-progress", "--set", "stages.1.epochs=2"]
        )
        == 0
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 3 and metrics["test"]["n_images"] == 8
    test = metrics["test"]
    assert test["protocol"] == "full"
    recalls = [test[f"{d}_r{k}"] for d in ("i2t", "t2i") for k in (1, 5, 10)]
    assert test["rsum"] == pytest.approx(sum(recalls))
    assert test["i2t_r1"] <= test["i2t_r5"] <= test["i2t_r10"]
    assert test["t2i_r1"] <= test["t2i_r5"] <= test["t2i_r10"] == 100.0  # 8 images < 10
    for picture in ("curves.png", "retrieval_grid.png"):
        assert (run / picture).stat().st_size > 1000
    assert (run / "checkpoints/best/vocab.json").exists()
    capsys.readouterr()

    assert main(["eval", str(run), "--split", "val", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["split"] == "synthetic_shapes/val" and "i2t_r1" in record

    exported = tmp_path / "onnx"
    assert main(["export", str(run), "--out", str(exported)]) == 0
    towers = json.loads((exported / "export.json").read_text())["towers"]
    assert towers["image"]["max_abs_diff"] < 1e-4 and towers["text"]["exported"]
    capsys.readouterr()

    index = tmp_path / "index"
    assert main(["index", "build", str(run), "--out", str(index)]) == 0
    manifest = json.loads((index / "retrieval.json").read_text())
    assert manifest["num_images"] == 48 and manifest["num_captions"] == 144
    capsys.readouterr()

    assert main(["search", str(index), "--text", "a red circle", "-k", "3", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)  # the shape of every search output
    assert line["query"] == "a red circle"
    hits = line["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert all({"rank", "score", "key", "caption"} <= set(h) for h in hits)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert main(["search", str(index), "--text", "a red circle", "--mode", "image", "--json"]) == 0
    image_hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(image_hits) == 10 and len({h["key"] for h in image_hits}) == 10

    from retrievalkit.search import SearchEngine

    engine = SearchEngine(index)
    image_only = engine.search_text(["a red circle"], 4, mode="image")[0]
    fused = engine.search_text(["a red circle"], 4)[0]
    assert len(image_only) == len(fused) == 4
    assert len({h.key for h in fused}) == 4  # one hit per item, not per caption
    with pytest.raises(ValueError, match="mode must be"):
        engine.search_text(["x"], 2, mode="captions")

    # the HTTP service over the same index returns the engine's hits
    from fastapi.testclient import TestClient

    from retrievalkit.serve.app import app_for_index

    client = TestClient(app_for_index(index))
    served = client.get("/search", params={"q": "a red circle", "k": 4}).json()["hits"]
    assert served == [hit.to_dict() for hit in fused]
    assert client.get("/health").json() == {"status": "ok", "items": 48, "task": "cross_modal"}

    queries = tmp_path / "queries.txt"
    queries.write_text("a red circle\n\nblue bar\n")
    assert main(["search", str(index), "--queries", str(queries), "-k", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["query"] for line in lines] == ["a red circle", "blue bar"]
    assert all(len(line["hits"]) == 2 for line in lines)

    from PIL import Image

    from retrievalkit.data import load_dataset

    image_path = tmp_path / "query.png"
    load_dataset("synthetic_shapes", n_images=48, size=16)["test"].images.load(0).save(image_path)
    assert main(["search", str(index), "--image", str(image_path), "-k", "2", "--json"]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["query"] == str(image_path) and len(line["hits"]) == 2
    assert (
        main(["search", str(index), "--image", str(image_path), "--to", "captions", "--json"]) == 0
    )
    assert "caption" in json.loads(capsys.readouterr().out)["hits"][0]
    assert Image.open(image_path).size == (16, 16)


def test_metric_learning_run_and_best_checkpoint(tmp_path, tiny_metric):
    raw = tiny_metric(
        data={"augment": True},
        model={"image": {"widths": [8, 16], "out_dim": 16}},
        losses=[{"name": "smooth_ap"}],
        epochs=2,
    )
    config = parse_config(raw)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.fit()
    results = finish_run(trainer)
    assert {"recall@1", "map", "map_at_r", "r_precision", "nmi"} <= set(results["test"])
    assert results["best_epoch"] in (1, 2)
    assert (tmp_path / "run/retrieval_grid.png").exists()
