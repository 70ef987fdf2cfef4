"""Gather-with-grad across 2 gloo processes equals one process holding the whole batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from retrievalkit.losses import (
    ClipLoss,
    MultiSimilarityLoss,
    SmoothAPLoss,
    TripletMarginLoss,
    VSELoss,
)
from retrievalkit.losses.distributed import DistributedPairLoss, gather_with_grad

WORLD, PER_RANK, DIM = 2, 8, 6

WORKER = textwrap.dedent(
    """
    import sys
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from retrievalkit.losses import MultiSimilarityLoss, SmoothAPLoss, TripletMarginLoss
    from retrievalkit.losses import ClipLoss, VSELoss
    from retrievalkit.losses.distributed import DistributedPairLoss, DistributedVSELoss

    rank, world, init, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    data = torch.load(sys.argv[5])
    rows = slice(rank * data["per_rank"], (rank + 1) * data["per_rank"])
    results = {}
    for name, loss in (
        ("ms", MultiSimilarityLoss()),
        ("smooth_ap", SmoothAPLoss(temperature=0.1)),
        ("triplet", TripletMarginLoss(margin=0.2, mining="batch_hard")),
    ):
        x = data["emb"][rows].clone().requires_grad_()
        value = DistributedPairLoss(loss)(x, data["labels"][rows])
        value.backward()
        results[name] = (value.detach(), x.grad)
    for name, loss in (
        ("vse_mh", VSELoss()),
        ("vse_sh", VSELoss(max_violation=False)),
        ("clip", ClipLoss(temperature=0.1).double()),
    ):
        img = data["img"][rows].clone().requires_grad_()
        txt = data["txt"][rows].clone().requires_grad_()
        value = DistributedVSELoss(loss)(img, txt, data["img_ids"][rows])
        value.backward()
        results[name] = (value.detach(), img.grad, txt.grad)
    torch.save(results, out)
    dist.destroy_process_group()
    """
)


def full_batch():
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(WORLD * PER_RANK, DIM, generator=g, dtype=torch.float64), dim=1)
    # classes of 2-3 samples span both ranks, order shuffled; every query has a
    # positive somewhere (see the module docstring for rows without one)
    labels = torch.tensor([0, 1, 2, 0, 3, 1, 4, 2, 3, 0, 5, 1, 4, 5, 6, 6])
    return emb, labels


def cross_modal_batch():
    g = torch.Generator().manual_seed(1)
    n = WORLD * PER_RANK
    img = F.normalize(torch.randn(n, DIM, generator=g, dtype=torch.float64), dim=1)
    txt = F.normalize(img + 0.5 * torch.randn(n, DIM, generator=g, dtype=torch.float64), dim=1)
    # global ids; image 3 has a caption on each rank (rows 6 and 9): never negatives
    img_ids = torch.tensor([0, 1, 2, 4, 5, 7, 3, 8, 9, 3, 10, 11, 12, 13, 14, 15])
    return img, txt, img_ids


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    emb, labels = full_batch()
    img, txt, img_ids = cross_modal_batch()
    torch.save(
        {
            "emb": emb,
            "labels": labels,
            "per_rank": PER_RANK,
            "img": img,
            "txt": txt,
            "img_ids": img_ids,
        },
        tmp / "data.pt",
    )
    script = tmp / "worker.py"
    script.write_text(WORKER)
    init = f"file://{tmp / 'rendezvous'}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(r),
                str(WORLD),
                init,
                str(tmp / f"r{r}.pt"),
                str(tmp / "data.pt"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(WORLD)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    return [torch.load(tmp / f"r{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize(
    "name, make",
    [
        ("ms", MultiSimilarityLoss),
        ("smooth_ap", lambda: SmoothAPLoss(temperature=0.1)),
        ("triplet", lambda: TripletMarginLoss(margin=0.2, mining="batch_hard")),
    ],
)
def test_two_ranks_equal_one_process(two_rank_results, name, make):
    emb, labels = full_batch()
    x = emb.clone().requires_grad_()
    full = make()(x, labels)
    full.backward()
    values = torch.stack([r[name][0] for r in two_rank_results])
    # mean of the ranks' losses = full-batch loss (losses averaged over query rows)
    torch.testing.assert_close(values.mean(), full.detach(), rtol=0, atol=1e-12)
    # each rank's gradient = WORLD x the full-batch gradient of its rows
    grads = torch.cat([r[name][1] for r in two_rank_results])
    torch.testing.assert_close(grads / WORLD, x.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name, max_violation", [("vse_mh", True), ("vse_sh", False)])
def test_vse_two_ranks_equal_one_process(two_rank_results, name, max_violation):
    img, txt, img_ids = cross_modal_batch()
    img, txt = img.clone().requires_grad_(), txt.clone().requires_grad_()
    full = VSELoss(max_violation=max_violation)(img, txt, img_ids)
    full.backward()
    # sum reduction: the ranks' losses add up, each rank's gradient is the full one
    total = sum(r[name][0] for r in two_rank_results)
    torch.testing.assert_close(total, full.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        torch.cat([r[name][1] for r in two_rank_results]), img.grad, rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        torch.cat([r[name][2] for r in two_rank_results]), txt.grad, rtol=0, atol=1e-12
    )


def test_clip_two_ranks_equal_one_process(two_rank_results):
    """ClipLoss averages over its query rows: the mean of the ranks' losses is the
    full-batch loss (image 3's captions on two ranks left out on both), and each
    rank's gradient is WORLD x the full-batch gradient of its rows."""
    img, txt, img_ids = cross_modal_batch()
    img, txt = img.clone().requires_grad_(), txt.clone().requires_grad_()
    full = ClipLoss(temperature=0.1).double()(img, txt, img_ids)
    full.backward()
    values = torch.stack([r["clip"][0] for r in two_rank_results])
    torch.testing.assert_close(values.mean(), full.detach(), rtol=0, atol=1e-12)
    for side, grad in ((1, img.grad), (2, txt.grad)):
        ranks = torch.cat([r["clip"][side] for r in two_rank_results])
        torch.testing.assert_close(ranks / WORLD, grad, rtol=0, atol=1e-12)


def test_single_process_is_the_plain_loss():
    emb, labels = full_batch()
    assert gather_with_grad(emb)[0] is emb
    loss = MultiSimilarityLoss()
    assert DistributedPairLoss(loss)(emb, labels) == loss(emb, labels)
