"""Each variant of configs/variants/mfsr_emoji_ablation.yaml (``retrievalkit compare
mfsr_emoji --variants mfsr_emoji_ablation``) is a valid change of mfsr_emoji: the model
and the stage's terms build, and a switched-off part has no parameters."""

from __future__ import annotations

import pytest

from retrievalkit.compare.plan import load_variants
from retrievalkit.data import Vocabulary
from retrievalkit.pipeline.build import build_model
from retrievalkit.run.config import load_config
from retrievalkit.run.recipes import resolve_recipe
from retrievalkit.training.objective import Objective, build_loss_modules, loss_keys

ROWS = {variant.name: variant for variant in load_variants("mfsr_emoji_ablation")}

EXPECTED_TERMS = {
    "vsepp": {"vse"},
    "mo_sp": {"vse", "mfsr_modality", "mfsr_specific"},
    "mo_sp_img": {"vse", "mfsr_modality", "mfsr_specific", "mfsr_image"},
    "mo_sp_cap": {"vse", "mfsr_modality", "mfsr_specific", "mfsr_caption"},
    "full": {"vse", "mfsr_modality", "mfsr_specific", "mfsr_caption", "mfsr_image"},
}


def test_the_rows_are_the_papers_five():
    assert list(ROWS) == list(EXPECTED_TERMS)


@pytest.mark.parametrize("row", list(EXPECTED_TERMS))
def test_row_builds_with_exactly_its_parts(row):
    config = load_config(resolve_recipe("mfsr_emoji"), list(ROWS[row].overrides))
    terms = {term.name for term in config.stages[0].losses}
    assert terms == EXPECTED_TERMS[row]
    model = build_model(config, Vocabulary.build(["a red car", "two dogs"]))
    assert (model.generator is not None) == ("mfsr_image" in terms)
    assert (model.decoder is not None) == ("mfsr_caption" in terms)
    losses = build_loss_modules(config, {"dim": config.model.embed_dim})
    available = set(model.output_names) | {"ids", "images"}
    Objective(config.stages[0], losses, loss_keys(config), available)  # no ConfigError
    assert bool(config.optim.groups) == ("mfsr_image" in terms)
