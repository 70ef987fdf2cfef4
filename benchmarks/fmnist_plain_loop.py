"""The plain 40-line Fashion-MNIST metric-learning loop (issue 13), with switches.

Reference point for the ``fashion_mnist_*`` recipes: train on classes 0-4 of the
training file, test on classes 5-9 of the test file (leave-one-out retrieval,
``retrievalkit.eval.metric_learning_scores``). Defaults are the loop the issue
measured: a 3-conv CNN with batch norm, 64-d L2-normalized embeddings, P x K =
5 x 25 batches, Adam 1e-3, 3 epochs (one epoch = min class size // K batches),
no augmentation, pixels in [0, 1], retrievalkit's MultiSimilarityLoss.

Each switch moves one factor to what a recipe does, for controlled experiments:

    python benchmarks/fmnist_plain_loop.py                       # the plain loop
    python benchmarks/fmnist_plain_loop.py --loss pml            # PML's MS loss + miner
    python benchmarks/fmnist_plain_loop.py --scale half          # (x - 0.5) / 0.5
    python benchmarks/fmnist_plain_loop.py --encoder small_cnn   # the recipes' encoder
    python benchmarks/fmnist_plain_loop.py --dim 128 --k 16 --batch 80 --epochs 5 --clip 10

Prints one JSON line (the switches, the test scores, the training wall time) and
writes it under a provenance header to ``--out`` (default
``results/fashion_mnist/plain_loop[_SETTING...]_seedS.json``; ``benchmarks/seed_stats.py``
reads it as recipe ``plain_loop``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from retrievalkit.data.fashion_mnist import ROOT, read_idx
from retrievalkit.eval import metric_learning_scores
from retrievalkit.losses import MultiSimilarityLoss
from retrievalkit.run.provenance import write_results

KEYS = ("recall@1", "recall@2", "recall@4", "recall@8", "map_at_r", "r_precision", "nmi")


class PlainCNN(nn.Module):
    """``[B, 1, 28, 28]`` -> ``[B, dim]`` (not normalized): 3 conv-BN-ReLU(-pool) + linear."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()
            )

        self.net = nn.Sequential(
            block(1, 32), nn.MaxPool2d(2), block(32, 64), nn.MaxPool2d(2), block(64, 128)
        )
        self.fc = nn.Linear(128, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.net(x).mean(dim=(2, 3)))


def load(scale: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Train images/labels of classes 0-4 and test images/labels of classes 5-9."""
    out = []
    for images, labels, keep in (("train", "train", "lt5"), ("t10k", "t10k", "ge5")):
        x = read_idx(ROOT / f"{images}-images-idx3-ubyte.gz")
        y = read_idx(ROOT / f"{labels}-labels-idx1-ubyte.gz").astype(np.int64)
        mask = y < 5 if keep == "lt5" else y >= 5
        xt = torch.from_numpy(x[mask].astype(np.float32) / 255.0)[:, None]
        if scale == "half":
            xt = (xt - 0.5) / 0.5
        out += [xt, torch.from_numpy(y[mask])]
    return out[0], out[1], out[2], out[3]


def pk_batches(labels: Tensor, p: int, k: int, gen: torch.Generator) -> list[Tensor]:
    """One epoch: each class shuffled and cut into groups of K; batch b takes group b
    of P random classes (all 5 when P = 5): ``min class size // K`` batches."""
    classes = torch.unique(labels)
    perms = [torch.nonzero(labels == c).flatten() for c in classes]
    perms = [idx[torch.randperm(len(idx), generator=gen)] for idx in perms]
    batches = []
    for step in range(min(len(idx) for idx in perms) // k):
        chosen = torch.randperm(len(classes), generator=gen)[:p].tolist()
        batches.append(torch.cat([perms[c][step * k : (step + 1) * k] for c in chosen]))
    return batches


def build_model(encoder: str, dim: int) -> nn.Module:
    if encoder == "plain":
        return PlainCNN(dim)
    from retrievalkit.models import build_embedding_model

    image = {"name": "small_cnn", "in_channels": 1, "out_dim": 256, "stem_stride": 1}
    model = build_embedding_model(image=image, embed_dim=dim)
    return nn.Sequential(model.encoder, model.head)


def build_loss(name: str) -> nn.Module:
    if name == "ours":
        return MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5, epsilon=0.1)
    from pytorch_metric_learning import losses, miners

    pml_loss = losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5)
    miner = miners.MultiSimilarityMiner(epsilon=0.1)
    return lambda emb, y: pml_loss(emb, y, miner(emb, y))


@torch.no_grad()
def embed(model: nn.Module, x: Tensor, batch: int = 1000) -> Tensor:
    model.eval()
    out = torch.cat([F.normalize(model(x[i : i + batch]), dim=1) for i in range(0, len(x), batch)])
    model.train()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loss", choices=["ours", "pml"], default="ours")
    parser.add_argument("--encoder", choices=["plain", "small_cnn"], default="plain")
    parser.add_argument("--scale", choices=["unit", "half"], default="unit")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=125)
    parser.add_argument("--k", type=int, default=25)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clip", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--curve", action="store_true", help="also print test scores after every epoch (diagnosis)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (.json; default results/fashion_mnist/plain_loop[_SETTINGS]_seedS.json)",
    )
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    train_x, train_y, test_x, test_y = load(args.scale)
    model = build_model(args.encoder, args.dim)
    loss_fn = build_loss(args.loss)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    steps = 0
    for epoch in range(args.epochs):
        for idx in pk_batches(train_y, args.batch // args.k, args.k, gen):
            loss = loss_fn(F.normalize(model(train_x[idx]), dim=1), train_y[idx])
            opt.zero_grad()
            loss.backward()
            if args.clip:
                nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            steps += 1
        if args.curve:
            curve = metric_learning_scores(embed(model, test_x), test_y, nmi=False)
            print(
                json.dumps(
                    {
                        "epoch": epoch + 1,
                        "steps": steps,
                        **{k: round(curve[k], 2) for k in KEYS[:5]},
                    }
                ),
                flush=True,
            )
    train_s = time.perf_counter() - start
    scores = metric_learning_scores(embed(model, test_x), test_y)
    row = {"recipe": "plain_loop", "seed": args.seed, "train_s": round(train_s, 1), "steps": steps}
    row["test"] = {k: round(scores[k], 2) for k in KEYS}
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    print(json.dumps({**settings, **row}))
    write_results(
        args.out or default_out(parser, args),
        {"settings": settings, "runs": [row]},
        seeds=[args.seed],
    )


def default_out(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """results/fashion_mnist/plain_loop[_<non-default setting>...]_seed<S>.json"""
    changed = [
        f"_{k}{v}"
        for k, v in vars(args).items()
        if k not in ("seed", "out", "curve") and v != parser.get_default(k)
    ]
    return Path("results/fashion_mnist") / f"plain_loop{''.join(changed)}_seed{args.seed}.json"


if __name__ == "__main__":
    main()
