"""Recipe parsing: typed fields, overrides, clear errors naming the key path."""

from pathlib import Path

import pytest

from retrievalkit.run.config import (
    ConfigError,
    LossTerm,
    apply_overrides,
    config_to_dict,
    load_config,
    parse_config,
)

MINIMAL = {
    "name": "t",
    "task": "cross_modal",
    "data": {"name": "emoji", "batch_size": 8},
    "model": {"image": {"name": "small_cnn"}, "text": {"name": "gru"}, "embed_dim": 16},
    "losses": [{"name": "vse", "options": {"margin": 0.2}}],
    "epochs": 3,
    "lr_drop_epochs": [2],
}


def test_minimal_recipe_becomes_one_stage() -> None:
    config = parse_config(MINIMAL)
    assert len(config.stages) == 1
    stage = config.stages[0]
    assert stage.epochs == 3 and stage.lr_drop_epochs == (2,)
    assert stage.losses == (LossTerm(name="vse", weight=1.0, options={"margin": 0.2}),)
    assert config.total_epochs == 3
    assert config.data.batch_size == 8


def test_round_trip_through_plain_dict() -> None:
    config = parse_config(MINIMAL)
    assert parse_config(config_to_dict(config)) == config


def test_unknown_key_names_its_path() -> None:
    bad = {**MINIMAL, "data": {"name": "emoji", "batchsize": 8}}
    with pytest.raises(ConfigError, match=r"data: unknown key\(s\) \['batchsize'\]"):
        parse_config(bad)


def test_wrong_type_names_its_path() -> None:
    bad = {**MINIMAL, "data": {"name": "emoji", "batch_size": "big"}}
    with pytest.raises(ConfigError, match="data.batch_size: expected int"):
        parse_config(bad)


def test_literal_checked() -> None:
    with pytest.raises(ConfigError, match="task: expected one of"):
        parse_config({**MINIMAL, "task": "both"})


def test_missing_required_key() -> None:
    raw = {k: v for k, v in MINIMAL.items() if k != "model"}
    with pytest.raises(ConfigError, match="model: required key is missing"):
        parse_config(raw)


def test_cross_modal_needs_text_encoder() -> None:
    raw = {**MINIMAL, "model": {"image": {"name": "small_cnn"}}}
    with pytest.raises(ConfigError, match="model.text is required"):
        parse_config(raw)


def test_overrides_parse_yaml_values() -> None:
    raw = apply_overrides(MINIMAL, ["optim.lr=1e-3", "data.batch_size=32", "losses.0.weight=2"])
    config = parse_config(raw)
    assert config.optim.lr == pytest.approx(1e-3)
    assert config.data.batch_size == 32
    assert config.stages[0].losses[0].weight == 2.0
    assert MINIMAL["data"]["batch_size"] == 8  # the input is not modified


def test_override_without_equals_is_an_error() -> None:
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides(MINIMAL, ["optim.lr"])


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("task: cross_modal\ndata: [1, 2]\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_stages_and_top_level_losses_exclusive() -> None:
    raw = {**MINIMAL, "stages": [{"name": "a", "losses": [{"name": "vse"}]}]}
    with pytest.raises(ConfigError, match="not both"):
        parse_config(raw)
