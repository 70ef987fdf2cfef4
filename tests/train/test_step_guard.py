"""NaN/Inf in a batch, an empty batch, a non-finite or exploding loss: logged with
the step, then the step is skipped or the run stops, as ``optim.nonfinite`` says."""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

import pytest
import torch

import retrievalkit.training.trainer as trainer_module
from retrievalkit.run.config import ConfigError, parse_config
from retrievalkit.training.guard import StepGuard, TrainingStopped
from retrievalkit.training.trainer import Trainer
from tests.tiny import END_TO_END


def test_guard_names_each_problem():
    guard = StepGuard("skip", max_loss=100.0)
    images = torch.zeros(4, 3, 2, 2)
    assert guard.batch_problem(images, torch.arange(4)) is None
    images[2, 0, 1, 1] = float("inf")
    assert guard.batch_problem(images, torch.arange(4)) == "1 of 4 inputs hold NaN or Inf values"
    empty = guard.batch_problem(torch.zeros(0, 3, 2, 2), torch.zeros(0, dtype=torch.long))
    assert empty == "empty batch (every item of it was skipped)"
    assert guard.loss_problem({"total": 3.0}) is None
    assert guard.loss_problem({"vse": float("nan"), "total": float("nan")}) == (
        "non-finite loss (vse=nan, total=nan)"
    )
    assert guard.loss_problem({"total": 250.0}) == ("loss 250 above optim.max_loss 100 (exploding)")
    with pytest.raises(TrainingStopped, match=r"^step 7: x; stopped as the recipe says"):
        StepGuard("stop").handle(7, "x")
    with pytest.raises(ConfigError, match="optim.nonfinite"):
        parse_config({**END_TO_END, "optim": {"nonfinite": "ignore"}})


def _recipe(**optim):
    raw = copy.deepcopy(END_TO_END)
    raw["stages"] = raw["stages"][:1]
    raw["optim"].update(optim)
    raw["checkpoint_every_steps"] = None
    return parse_config(raw)


@pytest.fixture()
def bad_batches(monkeypatch):
    """Batch 2 of each epoch holds a NaN image, batch 4 has no rows."""
    original = trainer_module.make_train_loader

    def loader(*args, **kwargs):
        for number, batch in enumerate(original(*args, **kwargs)):
            if number == 2:
                images = batch.images.clone()
                images[0, 0, 0, 0] = float("nan")
                batch = replace(batch, images=images)
            if number == 4:
                batch = replace(batch, images=batch.images[:0], captions=[], ids=batch.ids[:0])
            yield batch

    monkeypatch.setattr(trainer_module, "make_train_loader", loader)


def test_skip_leaves_the_weights_and_goes_on(tmp_path, bad_batches, caplog):
    trainer = Trainer(_recipe(), tmp_path / "run", progress=False)
    with caplog.at_level(logging.WARNING):
        state = trainer.fit()
    assert state.step == 12 and state.skipped_steps == 2
    assert "step 2: 1 of 8 inputs hold NaN or Inf values; step skipped" in caplog.text
    assert "step 4: empty batch (every item of it was skipped); step skipped" in caplog.text
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_stop_ends_the_run_with_one_line(tmp_path, bad_batches):
    trainer = Trainer(_recipe(nonfinite="stop"), tmp_path / "run", progress=False)
    with pytest.raises(TrainingStopped) as info:
        trainer.fit()
    assert str(info.value) == (
        "step 2: 1 of 8 inputs hold NaN or Inf values; stopped as the recipe says "
        f"(optim.nonfinite: stop); the last checkpoint is {tmp_path / 'run/checkpoints/last'}"
    )
    assert trainer.state.step == 2


def test_exploding_loss_stops(tmp_path):
    trainer = Trainer(_recipe(nonfinite="stop", max_loss=1e-3), tmp_path / "run", progress=False)
    with pytest.raises(TrainingStopped, match=r"^step 0: loss \S+ above optim.max_loss 0.001"):
        trainer.fit()
