"""Each row of benchmarks/mfsr_emoji_ablation.py is a valid change of mfsr_emoji: the
model and the stage's terms build, and a switched-off part has no parameters."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from retrievalkit.data import Vocabulary
from retrievalkit.pipeline.build import build_model
from retrievalkit.run.config import load_config
from retrievalkit.run.recipes import resolve_recipe
from retrievalkit.train.objective import Objective, build_loss_modules, loss_keys

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "mfsr_emoji_ablation.py"
_spec = importlib.util.spec_from_file_location("mfsr_emoji_ablation", SCRIPT)
ablation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ablation)

EXPECTED_TERMS = {
    "vsepp": {"vse"},
    "mo_sp": {"vse", "mfsr_modality", "mfsr_specific"},
    "mo_sp_img": {"vse", "mfsr_modality", "mfsr_specific", "mfsr_image"},
    "mo_sp_cap": {"vse", "mfsr_modality", "mfsr_specific", "mfsr_caption"},
    "full": {"vse", "mfsr_modality", "mfsr_specific", "mfsr_caption", "mfsr_image"},
}


@pytest.mark.parametrize("row", list(ablation.ROWS))
def test_row_builds_with_exactly_its_parts(row):
    _, sets = ablation.ROWS[row]
    config = load_config(resolve_recipe("mfsr_emoji"), sets)
    terms = {term.name for term in config.stages[0].losses}
    assert terms == EXPECTED_TERMS[row]
    model = build_model(config, Vocabulary.build(["a red car", "two dogs"]))
    assert (model.generator is not None) == ("mfsr_image" in terms)
    assert (model.decoder is not None) == ("mfsr_caption" in terms)
    losses = build_loss_modules(config, {"dim": config.model.embed_dim})
    available = set(model.output_names) | {"ids", "images"}
    Objective(config.stages[0], losses, loss_keys(config), available)  # no ConfigError
    assert bool(config.optim.groups) == ("mfsr_image" in terms)
