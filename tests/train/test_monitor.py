"""Collapse monitor (vsepp#27): warns on zero spread and on a VSE++ MH loss stuck at
2 B margin, and stays quiet on a healthy batch."""

import logging

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.losses import VSELoss
from retrievalkit.training.monitor import CollapseMonitor


def run_steps(monitor, img, txt, loss, steps):
    for _ in range(steps):
        value = float(loss(img, txt))
        monitor.update(
            (img, txt), {"vse": value}, img.shape[0], {"vse": loss.collapsed_value(img.shape[0])}
        )


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_mh_loss_at_2_b_margin_warns_once(caplog, reduction):
    # every image and caption embedding equal: all similarities tie (the spread
    # check warns too; here the loss-value check is under test)
    g = torch.Generator().manual_seed(0)
    base = F.normalize(torch.randn(1, 8, generator=g), dim=1)
    img = base.repeat(6, 1)
    txt = base.repeat(6, 1)
    loss = VSELoss(margin=0.2, reduction=reduction)
    assert float(loss(img, txt)) == pytest.approx(loss.collapsed_value(6))
    monitor = CollapseMonitor(patience=5)
    with caplog.at_level(logging.WARNING):
        run_steps(monitor, img, txt, loss, steps=12)
    messages = [r.getMessage() for r in caplog.records if "collapse value" in r.getMessage()]
    assert len(messages) == 1 and "vse" in messages[0]


def test_healthy_batch_does_not_warn(caplog):
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(16, 8, generator=g), dim=1)
    txt = F.normalize(img + 0.1 * torch.randn(16, 8, generator=g), dim=1)
    monitor = CollapseMonitor(patience=3)
    with caplog.at_level(logging.WARNING):
        run_steps(monitor, img, txt, VSELoss(), steps=10)
    assert not caplog.records


def test_sh_loss_has_no_collapse_value():
    assert VSELoss(max_violation=False).collapsed_value(8) is None


def test_a_collapsing_generator_warns_once_after_patience(caplog):
    monitor = CollapseMonitor(patience=3)
    reasons = ["mfsr_image: D1 accuracy pinned at 100% real / 100% generated"]
    with caplog.at_level(logging.WARNING, logger="retrievalkit.training.monitor"):
        monitor.update_adversaries(reasons, step=1)
        monitor.update_adversaries([], step=2)  # a healthy step resets the count
        for step in range(3, 9):
            monitor.update_adversaries(reasons, step=step)
    warnings = [r.getMessage() for r in caplog.records if "generator looks collapsed" in r.message]
    assert len(warnings) == 1 and "step 5" in warnings[0] and "D1 accuracy pinned" in warnings[0]
