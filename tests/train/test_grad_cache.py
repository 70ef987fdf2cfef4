"""Gradient caching: same parameter gradients as a chunked forward with activations
kept (float64, dropout and a module generator included), batch-norm statistics
updated once, non-finite losses skip, and a trainer step with the option matches one
without it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from retrievalkit.losses import InstanceLoss, VSELoss
from retrievalkit.run.config import ConfigError, parse_config
from retrievalkit.training.grad_cache import chunk_slices, grad_cache_backward


class NoisyTower(nn.Module):
    """Linear -> dropout -> + noise from its own generator -> L2 norm (like the
    TextCNN's position shift, randomness that torch's global RNG does not cover)."""

    def __init__(self, dim_in: int, dim_out: int, seed: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out).double()
        self.dropout = nn.Dropout(0.3)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x):
        noise = torch.rand(x.shape[0], 1, generator=self.generator, dtype=x.dtype)
        return F.normalize(self.dropout(self.linear(x)) + noise, dim=1)


def make_case(seed=0, batch=10):
    torch.manual_seed(seed)
    img_tower, txt_tower = NoisyTower(7, 5, seed=1), NoisyTower(4, 5, seed=2)
    images = torch.randn(batch, 7, dtype=torch.float64)
    texts = torch.randn(batch, 4, dtype=torch.float64)
    ids = torch.arange(batch) // 2  # two captions per image: not negatives
    instance = InstanceLoss(num_instances=batch // 2, dim=5).double()
    vse = VSELoss(max_violation=True)

    def loss_fn(embeddings):
        img, txt = embeddings
        return vse(img, txt, ids) + instance(img, txt, ids)

    return img_tower, txt_tower, instance, (images, texts), loss_fn


def grads(modules):
    return [p.grad.clone() for m in modules for p in m.parameters()]


@pytest.mark.parametrize("chunk", [1, 3, 10])
def test_equals_chunked_forward_with_activations(chunk):
    # reference: the same chunks encoded with the graph kept, then one backward
    img_tower, txt_tower, instance, (images, texts), loss_fn = make_case()
    torch.manual_seed(123)
    embeddings = [
        torch.cat([tower(data[part]) for part in chunk_slices(len(data), chunk)])
        for tower, data in ((img_tower, images), (txt_tower, texts))
    ]
    reference = loss_fn(tuple(embeddings))
    reference.backward()
    expected = grads([img_tower, txt_tower, instance])
    expected_rng = (torch.get_rng_state(), img_tower.generator.get_state())

    img_tower, txt_tower, instance, (images, texts), loss_fn = make_case()
    torch.manual_seed(123)
    _, value, stepped = grad_cache_backward(
        [img_tower, txt_tower], [images, texts], loss_fn, chunk, modules=[img_tower, txt_tower]
    )
    assert stepped
    torch.testing.assert_close(value, reference, rtol=0, atol=1e-12)
    for got, want in zip(grads([img_tower, txt_tower, instance]), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # the global and the module generators end where the plain chunked pass left them
    assert torch.equal(torch.get_rng_state(), expected_rng[0])
    assert torch.equal(img_tower.generator.get_state(), expected_rng[1])


def test_random_state_after_step_equals_plain_chunked_pass():
    img_tower, txt_tower, _, (images, texts), loss_fn = make_case()
    torch.manual_seed(5)
    grad_cache_backward([img_tower, txt_tower], [images, texts], loss_fn, 4, [img_tower, txt_tower])
    after_cache = (torch.rand(3), torch.rand(2, generator=img_tower.generator))

    img_tower, txt_tower, _, (images, texts), loss_fn = make_case()
    torch.manual_seed(5)
    for tower, data in ((img_tower, images), (txt_tower, texts)):
        for part in chunk_slices(len(data), 4):
            tower(data[part])
    after_plain = (torch.rand(3), torch.rand(2, generator=img_tower.generator))
    for a, b in zip(after_cache, after_plain, strict=True):
        assert torch.equal(a, b)


def test_batchnorm_statistics_updated_once():
    torch.manual_seed(0)
    tower = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)).double()
    data = torch.randn(8, 4, dtype=torch.float64)
    plain = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)).double()
    plain.load_state_dict(tower.state_dict())
    for part in chunk_slices(8, 4):
        plain(data[part])
    grad_cache_backward([tower], [data], lambda e: e[0].pow(2).sum(), 4, modules=[tower])
    assert int(tower[1].num_batches_tracked) == 2  # two chunks, once each
    torch.testing.assert_close(tower[1].running_mean, plain[1].running_mean, rtol=0, atol=1e-12)


def test_non_finite_loss_gives_no_gradient():
    img_tower, txt_tower, _, (images, texts), _ = make_case()
    _, _, stepped = grad_cache_backward(
        [img_tower, txt_tower],
        [images, texts],
        lambda e: e[0].sum() * float("nan"),
        4,
        [img_tower, txt_tower],
    )
    assert not stepped
    assert all(p.grad is None for p in img_tower.parameters())


def test_mismatched_towers_and_bad_chunk_are_clear_errors():
    img_tower, txt_tower, _, (images, texts), loss_fn = make_case()
    with pytest.raises(ValueError, match="same batch size"):
        grad_cache_backward([img_tower, txt_tower], [images, texts[:3]], loss_fn, 2)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        chunk_slices(4, 0)
    raw = {
        "name": "x",
        "task": "metric",
        "data": {"name": "fashion_mnist"},
        "model": {"image": {"name": "small_cnn"}},
        "losses": [{"name": "multi_similarity"}],
        "optim": {"grad_cache_chunk": 0},
    }
    with pytest.raises(ConfigError, match="optim.grad_cache_chunk must be >= 1"):
        parse_config(raw)


@pytest.mark.parametrize("adversarial", [False, True])
def test_trainer_with_one_chunk_per_batch_equals_plain_steps(tmp_path, adversarial):
    # grad_cache_chunk = batch size: the two-pass path on the real models (small CNN
    # with batch norm, GRU) ends with the same weights as the plain step
    import copy

    from retrievalkit.training.trainer import Trainer
    from tests.tiny import END_TO_END, END_TO_END_ADVERSARIAL

    def final_weights(name, chunk):
        raw = copy.deepcopy(END_TO_END_ADVERSARIAL if adversarial else END_TO_END)
        raw["optim"]["grad_cache_chunk"] = chunk
        raw["stages"] = raw["stages"][-1:] if adversarial else raw["stages"][:1]
        trainer = Trainer(parse_config(raw), tmp_path / name, progress=False)
        trainer.fit()
        weights = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
        weights.update({f"loss.{k}": v.clone() for k, v in trainer.losses.state_dict().items()})
        return weights

    plain, cached = final_weights("plain", None), final_weights("cached", 8)
    assert plain.keys() == cached.keys()
    for key in plain:
        torch.testing.assert_close(cached[key], plain[key], rtol=1e-4, atol=1e-6, msg=key)


def test_trainer_with_several_chunks_per_batch_equals_plain_steps(tmp_path):
    # batch 8 in chunks of 3, 3, 2 through the real models (small CNN, GRU, heads):
    # with the batch-norm layers frozen (eval mode, so a chunk normalizes like the
    # whole batch) every step equals the plain one, so the final weights match
    import copy

    from retrievalkit.training.trainer import Trainer
    from tests.tiny import END_TO_END

    batch_norms = [f"image_encoder.features.{i}.1" for i in range(4)]

    def final_weights(name, chunk):
        raw = copy.deepcopy(END_TO_END)
        raw["optim"]["grad_cache_chunk"] = chunk
        raw["stages"] = [{**stage, "freeze": batch_norms} for stage in raw["stages"]]
        trainer = Trainer(parse_config(raw), tmp_path / name, progress=False)
        trainer.fit()
        assert trainer.state.step == 24 and trainer.state.skipped_steps == 0
        return {k: v.clone() for k, v in trainer.model.state_dict().items()}

    plain, cached = final_weights("plain", None), final_weights("cached", 3)
    initial = Trainer(parse_config(END_TO_END), tmp_path / "init", progress=False)
    moved = [k for k, v in initial.model.state_dict().items() if not torch.equal(v, plain[k])]
    assert "image_encoder.fc.weight" in moved and "text_encoder.gru.weight_hh_l0" in moved
    assert plain.keys() == cached.keys()
    for key in plain:
        torch.testing.assert_close(cached[key], plain[key], rtol=1e-4, atol=1e-6, msg=key)
