"""The model contract: registered models with named outputs, loss terms that name
their inputs, optimizer groups, and adversaries that never step on a skipped step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.eval import cross_modal_recall
from retrievalkit.models import MODELS, ModelOutputs, ModelSpec, RetrievalModel, build_model
from retrievalkit.models.registry import build_image_encoder, build_text_encoder
from retrievalkit.run.config import ConfigError, parse_config
from retrievalkit.training.trainer import Trainer
from tests.tiny import END_TO_END, END_TO_END_ADVERSARIAL


class PartsModel(RetrievalModel):
    """A test model with two named parts per side; retrieval uses ``*.se``."""

    inputs = ("images", "captions")
    output_names = ("image.se", "image.sp", "text.se", "text.sp")
    retrieval = {"image": "image.se", "text": "text.se"}  # noqa: RUF012

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        image = dict(spec.image)
        text = dict(spec.text or {})
        self.image_encoder = build_image_encoder(image.pop("name"), **image)
        self.text_encoder = build_text_encoder(text.pop("name"), vocab=spec.vocab, **text)
        dim = spec.embed_dim
        self.image_parts = nn.Linear(self.image_encoder.out_dim, 2 * dim)
        self.text_parts = nn.Linear(self.text_encoder.out_dim, 2 * dim)

    def forward(
        self, images: Tensor | None = None, captions: list[str] | None = None
    ) -> ModelOutputs:
        outputs = ModelOutputs()
        if images is not None:
            se, sp = self.image_parts(self.image_encoder(images)).chunk(2, dim=1)
            outputs.update({"image.se": F.normalize(se, dim=1), "image.sp": F.normalize(sp, dim=1)})
        if captions is not None:
            se, sp = self.text_parts(self.text_encoder(captions)).chunk(2, dim=1)
            outputs.update({"text.se": F.normalize(se, dim=1), "text.sp": F.normalize(sp, dim=1)})
        return outputs


if "test_parts" not in MODELS:
    MODELS.register("test_parts")(PartsModel)


def parts_recipe(**term: object) -> dict:
    raw = copy.deepcopy(END_TO_END)
    raw["model"]["name"] = "test_parts"
    raw["stages"] = [{"name": "main", "epochs": 1, "losses": [{"name": "vse", **term}]}]
    raw.pop("checkpoint_every_steps")
    return raw


def test_build_model_is_a_registry_lookup():
    assert {"dual_encoder", "embedding", "test_parts"} <= set(MODELS.names())
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        build_model("nope", ModelSpec(image={"name": "small_cnn"}))


def test_a_term_naming_a_missing_output_is_a_config_error(tmp_path):
    raw = parts_recipe()  # VSE++ defaults to image/text, which this model does not produce
    with pytest.raises(ConfigError, match=r"img='image'.*test_parts.*image\.se"):
        Trainer(parse_config(raw), tmp_path, progress=False)
    raw = parts_recipe(inputs={"img": "image.se", "txt": "text.se", "bad": "x"})
    with pytest.raises(ConfigError, match=r"unknown input\(s\) \['bad'\]"):
        Trainer(parse_config(raw), tmp_path, progress=False)


def test_named_inputs_reach_the_loss_and_retrieval_uses_the_declared_side(tmp_path):
    raw = parts_recipe(inputs={"img": "image.sp", "txt": "text.sp"})
    trainer = Trainer(parse_config(raw), tmp_path, progress=False)
    seen: dict[str, Tensor] = {}
    vse = trainer.losses["vse"]
    original = vse.forward

    def recording(img: Tensor, txt: Tensor, img_ids: Tensor | None = None) -> Tensor:
        seen.update(img=img, txt=txt)
        return original(img, txt, img_ids)

    vse.forward = recording  # type: ignore[method-assign]
    batch = next(iter(trainer_loader(trainer)))
    torch.manual_seed(0)
    trainer.train_step(batch, trainer.objectives["main"])
    trainer.model.eval()
    with torch.no_grad():
        outputs = trainer.model(images=batch.images, captions=batch.captions)
        retrieval = trainer.model.encode_image(batch.images)
    assert torch.allclose(retrieval, outputs["image.se"])
    assert not torch.allclose(retrieval, outputs["image.sp"])
    assert seen["img"].shape == outputs["image.sp"].shape
    split = trainer.val_split
    record = trainer.evaluate(split)  # must score image.se against text.se
    with torch.no_grad():
        images = torch.stack(
            [trainer.eval_transform(split.images.load(i)) for i in range(len(split.images))]
        )
        parts = trainer.model(images=images, captions=list(split.captions))
    expected = cross_modal_recall(
        parts["image.se"], parts["text.se"], torch.as_tensor(split.caption_image)
    )
    assert record["rsum"] == pytest.approx(expected["rsum"])


def trainer_loader(trainer: Trainer):
    from retrievalkit.training.data_loading import make_train_loader

    return make_train_loader(
        trainer.train_split, trainer.config.data, trainer.train_transform, True, seed=0, epoch=0
    )


def test_optimizer_groups_take_their_parameters_and_learning_rate(tmp_path):
    raw = copy.deepcopy(END_TO_END_ADVERSARIAL)
    raw["optim"]["groups"] = [
        {"name": "text", "params": ["text_encoder", "text_head"], "lr": 1e-2},
        {"name": "disc", "params": ["loss.modality_adversarial"], "lr": 3e-3, "optimizer": "sgd"},
    ]
    trainer = Trainer(parse_config(raw), tmp_path, progress=False)
    assert set(trainer.groups) == {"main", "text", "disc"}
    assert trainer.groups["disc"].adversary and not trainer.groups["text"].adversary
    assert isinstance(trainer.groups["disc"].optimizer, torch.optim.SGD)
    text_ids = {id(p) for p in trainer.model.text_encoder.parameters()}
    main_ids = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert text_ids and not text_ids & main_ids
    stage = trainer.config.stages[-1]
    trainer.state.step = 100  # past the warm-up
    trainer._set_learning_rates(stage, 0)
    lrs = {name: g.optimizer.param_groups[0]["lr"] for name, g in trainer.groups.items()}
    assert lrs == {"main": pytest.approx(1e-3), "text": pytest.approx(1e-2), "disc": 3e-3}
    trainer.fit()
    assert (tmp_path / "checkpoints/last").exists()
    resumed = Trainer(parse_config(raw), tmp_path, progress=False)
    resumed.restore(tmp_path / "checkpoints/last")
    assert resumed.groups["disc"].optimizer.state_dict()["state"]


def test_a_group_mixing_adversary_and_encoder_parameters_is_an_error(tmp_path):
    raw = copy.deepcopy(END_TO_END_ADVERSARIAL)
    raw["optim"]["groups"] = [{"name": "g", "params": ["image_head", "loss.modality_adversarial"]}]
    with pytest.raises(ConfigError, match="mixes an adversary"):
        Trainer(parse_config(raw), tmp_path, progress=False)
    raw["optim"]["groups"] = [{"name": "g", "params": ["no_such_module"]}]
    with pytest.raises(ConfigError, match="no trainable parameter under"):
        Trainer(parse_config(raw), tmp_path, progress=False)


def test_a_skipped_step_does_not_step_the_adversary(tmp_path):
    raw = copy.deepcopy(END_TO_END_ADVERSARIAL)
    raw["stages"] = raw["stages"][-1:]
    trainer = Trainer(parse_config(raw), tmp_path, progress=False)
    discriminator = list(trainer.losses["modality_adversarial"].adversary_parameters())
    before = [p.detach().clone() for p in discriminator]
    vse = trainer.losses["vse"]
    original = vse.forward
    vse.forward = lambda *a, **k: original(*a, **k) * float("nan")  # type: ignore[method-assign]
    batch = next(iter(trainer_loader(trainer)))
    assert trainer.train_step(batch, trainer.objectives["mh"]) is None
    assert trainer.state.skipped_steps == 1
    assert all(torch.equal(a, p) for a, p in zip(before, discriminator, strict=True))
    assert not trainer.adversary_optimizer.state_dict()["state"]
    vse.forward = original  # type: ignore[method-assign]
    assert trainer.train_step(batch, trainer.objectives["mh"]) is not None
    assert any(not torch.equal(a, p) for a, p in zip(before, discriminator, strict=True))


def test_grad_cache_needs_the_losses_to_read_only_tower_outputs(tmp_path):
    raw = parts_recipe(inputs={"img": "image.se", "txt": "text.se"})
    raw["optim"]["grad_cache_chunk"] = 4
    trainer = Trainer(parse_config(raw), tmp_path, progress=False)
    batch = next(iter(trainer_loader(trainer)))
    with pytest.raises(ConfigError, match="gradient caching can only re-encode"):
        trainer.train_step(batch, trainer.objectives["main"])


def test_task_must_agree_with_the_model(tmp_path):
    raw = copy.deepcopy(END_TO_END)
    raw["task"] = "metric"
    with pytest.raises(ConfigError, match="disagrees with model 'dual_encoder'"):
        Trainer(parse_config(raw), tmp_path, progress=False)
    raw.pop("task")
    assert Trainer(parse_config(raw), tmp_path, progress=False).model.has_text
