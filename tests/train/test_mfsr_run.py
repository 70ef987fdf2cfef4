"""mFSR through the trainer and the CLI: discriminators in their own optimizer group,
GAN health in the log, a missing output as a config error, the end-of-run pictures,
and eval / index / search / serve / export on its semantic parts. (Its bit-for-bit
resume is in test_end_to_end's resume test.)"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import yaml

from retrievalkit.cli import main
from retrievalkit.run.config import ConfigError, parse_config
from retrievalkit.training.trainer import Trainer
from tests.train.test_end_to_end import MFSR


def test_discriminators_step_in_their_own_group_at_their_own_lr(tmp_path):
    trainer = Trainer(parse_config(MFSR), tmp_path, progress=False)
    assert set(trainer.groups) == {"main", "discriminators"}
    discriminators = trainer.groups["discriminators"]
    assert discriminators.adversary
    d_params = list(trainer.losses["mfsr_image"].parameters())
    assert {id(p) for g in discriminators.optimizer.param_groups for p in g["params"]} == {
        id(p) for p in d_params
    }
    main_ids = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not main_ids & {id(p) for p in d_params}
    assert {id(p) for p in trainer.model.generator.parameters()} <= main_ids
    before = [p.detach().clone() for p in d_params]
    trainer.fit()
    assert discriminators.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)
    assert discriminators.optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert any(not torch.equal(a, p) for a, p in zip(before, d_params, strict=True))
    header = (tmp_path / "train_log.csv").read_text().splitlines()[0].split(",")
    expected = {"vse", "mfsr_modality", "mfsr_specific", "mfsr_caption", "mfsr_image"}
    assert expected | {"adversary", "mfsr_image.d1_real_acc", "mfsr_image.fake_spread"} <= set(
        header
    )


def test_a_term_whose_output_is_switched_off_is_a_config_error(tmp_path):
    raw = copy.deepcopy(MFSR)
    raw["model"]["options"]["generator"] = None
    with pytest.raises(ConfigError, match=r"recon\.image.*not produced by model 'mfsr'"):
        Trainer(parse_config(raw), tmp_path, progress=False)


def test_switching_the_image_reconstruction_off_removes_its_parameters(tmp_path):
    raw = copy.deepcopy(MFSR)
    raw["model"]["options"]["generator"] = None
    raw["optim"].pop("groups")
    for stage in raw["stages"]:
        stage["losses"] = [t for t in stage["losses"] if t["name"] != "mfsr_image"]
    trainer = Trainer(parse_config(raw), tmp_path, progress=False)
    assert trainer.model.generator is None and "mfsr_image" not in trainer.losses
    assert set(trainer.groups) == {"main"}


def test_cli_train_pictures_eval_index_search_serve(tmp_path, capsys):
    recipe = tmp_path / "mfsr.yaml"
    recipe.write_text(yaml.safe_dump(MFSR))
    run = tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(run), "--no-progress"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test"]["rsum"] <= 600
    assert (run / "reconstructions.png").stat().st_size > 1000
    lines = (run / "captions.txt").read_text().splitlines()
    assert lines[0] == "image\ttrue caption\tdecoded caption" and len(lines) == 9  # 8 test images
    capsys.readouterr()

    assert main(["eval", str(run), "--split", "val", "--json"]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "i2t_r1" in record

    index = tmp_path / "index"
    assert main(["index", "build", str(run), "--out", str(index)]) == 0
    capsys.readouterr()
    assert main(["search", str(index), "--text", "a red circle", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]

    from fastapi.testclient import TestClient

    from retrievalkit.serve.app import app_for_index

    client = TestClient(app_for_index(index))
    served = client.get("/search", params={"q": "a red circle", "k": 3}).json()["hits"]
    assert [h["key"] for h in served] == [h["key"] for h in hits]

    exported = tmp_path / "onnx"
    assert main(["export", str(run), "--out", str(exported)]) == 0
    towers = json.loads((exported / "export.json").read_text())["towers"]
    assert towers["image"]["max_abs_diff"] < 1e-4
