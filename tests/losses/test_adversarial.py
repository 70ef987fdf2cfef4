"""Adversarial terms: the modality discriminator's two losses from the formula, where
their gradients go, and the trainer's separate adversary optimizer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from retrievalkit.losses import ModalityAdversarialLoss, build_loss
from retrievalkit.losses.adversarial import is_adversarial


def unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


def by_hand(loss, img, txt, image_label):
    """Mean over 2B rows of -[y log p + (1 - y) log(1 - p)], p = sigmoid(D(x))."""
    terms = []
    for x, y in [(row, image_label) for row in img] + [(row, 1 - image_label) for row in txt]:
        p = torch.sigmoid(loss.discriminator(x.unsqueeze(0)).squeeze())
        terms.append(-(y * torch.log(p) + (1 - y) * torch.log(1 - p)))
    return torch.stack(terms).mean()


def test_losses_equal_the_formula_and_route_gradients():
    torch.manual_seed(0)
    loss = build_loss("modality_adversarial", dim=6, hidden=5)
    assert isinstance(loss, ModalityAdversarialLoss) and is_adversarial(loss)
    img, txt = unit(4, 6, 1).requires_grad_(), unit(4, 6, 2).requires_grad_()
    ids = torch.arange(4)
    adversary = loss.adversary_loss((img, txt), ids)
    torch.testing.assert_close(adversary, by_hand(loss, img, txt, 1.0), rtol=1e-5, atol=1e-6)
    adversary.backward()
    assert img.grad is None and txt.grad is None  # the adversary sees detached embeddings
    assert all(p.grad is not None for p in loss.adversary_parameters())
    encoders = loss(img, txt, ids)  # the encoders' loss: labels flipped
    torch.testing.assert_close(encoders, by_hand(loss, img, txt, 0.0), rtol=1e-5, atol=1e-6)
    encoders.backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_trainer_gives_the_adversary_its_own_optimizer(tmp_path):
    from retrievalkit.run.config import parse_config
    from retrievalkit.training.trainer import Trainer
    from tests.tiny import END_TO_END_ADVERSARIAL

    trainer = Trainer(parse_config(END_TO_END_ADVERSARIAL), tmp_path, progress=False)
    discriminator = list(trainer.losses["modality_adversarial"].adversary_parameters())
    main_ids = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert trainer.adversary_optimizer is not None
    assert not main_ids & {id(p) for p in discriminator}
    before = [p.detach().clone() for p in discriminator]
    trainer.fit()
    assert any(not torch.equal(a, p) for a, p in zip(before, discriminator, strict=True))
    header = (tmp_path / "train_log.csv").read_text().splitlines()[0].split(",")
    assert {"vse", "modality_adversarial", "adversary"} <= set(header)
