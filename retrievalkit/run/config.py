"""Typed run configuration: a YAML recipe parsed once into frozen dataclasses.

The recipe is plain data; ``load_config(path, overrides)`` resolves ``--set
a.b=value`` overrides, checks every key (an unknown key names its path and the
known keys) and returns a :class:`RunConfig`. ``config_to_dict`` gives back the
plain dict stored with checkpoints (never a pickled object).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from retrievalkit.errors import ConfigError
from retrievalkit.run.overrides import apply_overrides
from retrievalkit.run.recipes import resolve_recipe
from retrievalkit.run.strict_yaml import YAMLInputError, load_yaml
from retrievalkit.run.typed import build_dataclass


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, how it is read and batched.

    ``sampler``: "unique_images" (cross-modal: no two captions of one image in a
    batch), "random", or "pk" (P classes x K samples, metric learning).
    ``batch_size`` is the global batch: under ``torchrun`` each of the W ranks
    trains on its ``batch_size / W`` rows of every batch.
    ``views``: with an image tower that declares a frozen trunk (a pretrained
    EfficientNet), the training images' trunk outputs are computed once for this
    many views per image and cached on disk (view 0 the evaluation transform, the
    others random resized crops drawn once, when ``augment``); each epoch draws one
    view per item (``pipeline/tower_cache.py``).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    image_size: int = 64
    augment: bool = True
    batch_size: int = 128
    sampler: Literal["unique_images", "random", "pk"] = "unique_images"
    samples_per_class: int = 4
    num_workers: int = 0
    views: int = 1
    train_split: str = "train"
    val_split: str | None = "val"
    test_split: str = "test"


@dataclass(frozen=True)
class ModelConfig:
    """Encoders and joint space. ``image``/``text`` are ``{"name": ..., **options}``.

    ``name`` picks a registered model (``models.MODELS``); left out, it is
    ``dual_encoder`` with a text encoder and ``embedding`` without. ``options``
    go to that model's factory (e.g. mFSR's separation and reconstruction parts).
    """

    image: dict[str, Any]
    text: dict[str, Any] | None = None
    embed_dim: int = 1024
    vocab_min_count: int = 1
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossTerm:
    """One weighted loss term: ``name`` from the loss registry plus its options.

    ``inputs`` maps the loss's arguments to the model outputs (or batch fields,
    ``ids``, ``images``) they take, e.g. ``{img: image.se, txt: text.se}``; an
    argument left out takes the loss's default (``img: image``, ``txt: text``,
    ``embeddings: embedding``, ``labels: ids``, ...).
    """

    name: str
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageConfig:
    """A training stage: its epochs, loss terms and frozen modules (name prefixes).

    ``lr`` overrides the optimizer's base lr for the stage; ``lr_drop_epochs`` are
    epochs (counted within the stage) after which the lr is multiplied by
    ``lr_drop_factor`` (VSE++: 2e-4 for 15 epochs then 2e-5 -> ``[15]``).
    """

    name: str = "main"
    epochs: int = 1
    losses: tuple[LossTerm, ...] = ()
    freeze: tuple[str, ...] = ()
    lr: float | None = None
    lr_drop_epochs: tuple[int, ...] = ()
    lr_drop_factor: float = 0.1


@dataclass(frozen=True)
class ParamGroupConfig:
    """Parameters with their own optimizer, learning rate and schedule.

    ``params``: module-name prefixes of the model (``image_encoder``,
    ``text_head``) or of the losses (``loss.<term>``, e.g. a discriminator owned
    by a loss term). Unset values follow ``optim`` (``lr``: the stage's lr);
    ``lr_drop_epochs`` unset follows the stage's drops. A group holds either
    parameters trained by the loss or an adversary's (discriminators), not both.
    """

    name: str
    params: tuple[str, ...]
    optimizer: Literal["adam", "adamw", "sgd"] | None = None
    lr: float | None = None
    weight_decay: float | None = None
    betas: tuple[float, ...] | None = None
    lr_drop_epochs: tuple[int, ...] | None = None


@dataclass(frozen=True)
class OptimConfig:
    """The main optimizer; ``groups`` carve parameters out of it into their own."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 2e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    betas: tuple[float, ...] = (0.9, 0.999)
    grad_clip: float | None = 2.0
    warmup_steps: int = 0
    grad_cache_chunk: int | None = None  # encode in chunks of this many rows (grad_cache.py)
    # a batch with NaN/Inf or no rows, a non-finite loss or one above max_loss:
    # "skip" the step (logged, counted) or "stop" the run (train/guard.py)
    nonfinite: Literal["skip", "stop"] = "skip"
    max_loss: float | None = None
    groups: tuple[ParamGroupConfig, ...] = ()


@dataclass(frozen=True)
class EvalConfig:
    """Validation: protocol name, the metric that picks the best checkpoint."""

    protocol: str = "full"
    metric: str = "rsum"
    every_epochs: int = 1
    batch_size: int = 256
    max_val_images: int | None = None


@dataclass(frozen=True)
class DistributedConfig:
    """Data-parallel training (``torchrun``; ignored in a single process).

    ``gather``: each rank's rows meet every rank's references in the pair and VSE
    losses (gather with gradient); off, each rank's loss sees its own rows only.
    ``sync_batchnorm``: batch-norm statistics over the global batch (GPU only in
    PyTorch). ``find_unused_parameters``: for models whose outputs a stage leaves
    unused (DistributedDataParallel's flag).
    """

    gather: bool = True
    sync_batchnorm: bool = False
    find_unused_parameters: bool = False


@dataclass(frozen=True)
class RunConfig:
    """A whole recipe.

    ``task`` ("cross_modal" or "metric") is optional documentation: what a run
    does follows from its model (one with a text side is trained on pairs and
    scored cross-modally); when given, it must agree with the model.
    """

    name: str
    data: DataConfig
    model: ModelConfig
    stages: tuple[StageConfig, ...]
    task: Literal["cross_modal", "metric"] | None = None
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    distributed: DistributedConfig = DistributedConfig()
    seed: int = 0
    amp: bool = True
    checkpoint_every_steps: int | None = None
    log_every_steps: int = 10
    paper: str | None = None

    @property
    def total_epochs(self) -> int:
        return sum(stage.epochs for stage in self.stages)


def _normalize_stages(raw: dict[str, Any]) -> dict[str, Any]:
    """A recipe may give ``losses`` + ``epochs`` at top level instead of ``stages``."""
    raw = dict(raw)
    if "stages" in raw:
        if "losses" in raw or "epochs" in raw:
            raise ConfigError("give either 'stages' or top-level 'losses'/'epochs', not both")
        return raw
    stage = {"name": "main", "losses": raw.pop("losses", []), "epochs": raw.pop("epochs", 1)}
    for key in ("lr_drop_epochs", "lr_drop_factor", "freeze"):
        if key in raw:
            stage[key] = raw.pop(key)
    raw["stages"] = [stage]
    return raw


def parse_config(raw: dict[str, Any], source: str = "<dict>") -> RunConfig:
    """Plain dict -> :class:`RunConfig`; errors name ``source`` and the key path."""
    try:
        config = build_dataclass(RunConfig, _normalize_stages(raw), "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    for stage in config.stages:
        if not stage.losses:
            raise ConfigError(f"{source}: stage {stage.name!r} has no losses")
        if stage.epochs < 1:
            raise ConfigError(f"{source}: stage {stage.name!r} needs epochs >= 1")
    if config.task == "cross_modal" and config.model.text is None:
        raise ConfigError(f"{source}: model.text is required for task cross_modal")
    group_names = [group.name for group in config.optim.groups]
    if len(set(group_names)) != len(group_names) or {"main", "adversary"} & set(group_names):
        raise ConfigError(
            f"{source}: optim.groups: names must be unique and not 'main' or 'adversary', "
            f"got {group_names}"
        )
    chunk = config.optim.grad_cache_chunk
    if chunk is not None and chunk < 1:
        raise ConfigError(f"{source}: optim.grad_cache_chunk must be >= 1 (or null), got {chunk}")
    return config


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML recipe (a path or a shipped recipe's name), apply ``--set``
    overrides, validate, return it."""
    path = resolve_recipe(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        raise ConfigError(f"recipe {path} does not exist") from None
    except OSError as err:  # a directory, no permission
        raise ConfigError(f"{path}: cannot read the recipe ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except YAMLInputError as err:
        raise ConfigError(str(err)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if "name" not in raw:
        raw["name"] = path.stem
    return parse_config(apply_overrides(raw, overrides or []), source=str(path))


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The plain dict (YAML-safe) of a config, as stored with checkpoints."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))
