"""Zero-SGD baseline of a frozen image tower: a ridge (least-squares) head, no training loop.

    OMP_NUM_THREADS=1 python benchmarks/frozen_tower_lstsq.py emoji_lite0_clip \\
        [--set KEY=VALUE ...] [--lambdas 0.1 1 10 100 1000] \\
        [--out results/emoji/lstsq_lite0.md]

What a pretrained tower gives with no learned head beyond a closed-form map: the
recipe's frozen trunk features (view 0, the evaluation transform, read from the
tower cache), ``X [N, F]``, are mapped into the frozen MiniLM caption space by
``W = argmin ||[X 1] W - T||^2 + lambda ||W||^2``, where each training (caption,
image) pair gives one row (``T [P, 384]``, the caption's MiniLM embedding). lambda
is chosen on the val split (rsum, protocol ``full``); only that lambda is scored
on the test split and on each style's view of it. A random head would score chance
by construction and is not run. Writes a results file with the provenance header.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def standardize_by_style(rows: Tensor, styles: list[str] | None) -> Tensor:
    """``rows [N, F]`` z-scored per channel within each style's own images (the style's
    mean and std over the split's images of that style, no labels used); unchanged when
    the split has no styles."""
    if styles is None:
        return rows
    out = torch.empty_like(rows)
    for style in sorted(set(styles)):
        members = torch.tensor([i for i, s in enumerate(styles) if s == style])
        part = rows[members]
        out[members] = (part - part.mean(0)) / (part.std(0) + 1e-6)
    return out


def split_features(
    trainer: Any, split: Any, by_style: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """(trunk rows ``[N, F]``, caption embeddings ``[M, 384]``, caption -> image ``[M]``);
    ``by_style``: rows standardized within each art style (``standardize_by_style``)."""
    from retrievalkit.pipeline.embed import embed_captions
    from retrievalkit.pipeline.tower_cache import cached_views

    cached = cached_views(trainer.model, split.images, trainer.eval_transform)
    if cached is None:
        raise SystemExit(f"{trainer.config.name}: the image tower declares no frozen trunk")
    rows = torch.as_tensor(cached.rows[:, 0].reshape(len(cached), -1)).float()
    if by_style:
        rows = standardize_by_style(rows, getattr(split, "image_styles", None))
    with torch.no_grad():
        text = embed_captions(trainer.model.encode_text, split.captions)
    return rows, text, torch.as_tensor(split.caption_image, dtype=torch.long)


def fit_ridge(x: Tensor, t: Tensor, lam: float) -> tuple[Tensor, Tensor, Tensor]:
    """Ridge map of standardized ``x [P, F]`` onto ``t [P, D]``: (mean, scale, W [F+1, D])."""
    mean, scale = x.mean(0), x.std(0) + 1e-6
    z = torch.cat([(x - mean) / scale, torch.ones(len(x), 1)], 1).double()
    gram = z.T @ z + lam * torch.eye(z.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, z.T @ t.double())
    return mean, scale, w.float()


def project(x: Tensor, fitted: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """``x [N, F]`` -> L2-normalized ``[N, D]`` in the caption space."""
    mean, scale, w = fitted
    z = torch.cat([(x - mean) / scale, torch.ones(len(x), 1)], 1)
    return torch.nn.functional.normalize(z @ w, dim=1)


def score(split_data: tuple[Tensor, Tensor, Tensor], fitted: Any) -> dict[str, Any]:
    from retrievalkit.eval import evaluate_protocol

    rows, text, caption_image = split_data
    return dict(evaluate_protocol("full", project(rows, fitted), text, caption_image))


RECALL_KEYS = ("rsum", "i2t_r1", "i2t_r5", "i2t_r10", "t2i_r1", "t2i_r5", "t2i_r10")


def recall_table(records: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines: one row per split of ``records`` (split -> scores), RECALL_KEYS."""
    return [
        "| split | " + " | ".join(RECALL_KEYS) + " |",
        "|---|" + "---|" * len(RECALL_KEYS),
        *(
            f"| {name} | " + " | ".join(f"{record[k]:.1f}" for k in RECALL_KEYS) + " |"
            for name, record in records.items()
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    from retrievalkit.run.config import load_config
    from retrievalkit.run.provenance import write_results
    from retrievalkit.training.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--lambdas", type=float, nargs="+", default=[1, 10, 100, 1000, 10000])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--by-style",
        action="store_true",
        help="standardize trunk features within each art style of each split "
        "(transductive: uses the unlabelled images of the style being searched)",
    )
    args = parser.parse_args(argv)
    by_style = args.by_style
    config = load_config(args.recipe, args.overrides)
    with tempfile.TemporaryDirectory(prefix="lstsq_") as work:
        trainer = Trainer(config, Path(work) / "run", progress=False)
    train = split_features(trainer, trainer.splits["train"], by_style)
    x_pairs, t_pairs = train[0][train[2]], train[1]
    val = split_features(trainer, trainer.splits["val"], by_style)
    sweep = {lam: score(val, fit_ridge(x_pairs, t_pairs, lam)) for lam in args.lambdas}
    best = max(args.lambdas, key=lambda lam: sweep[lam]["rsum"])
    fitted = fit_ridge(x_pairs, t_pairs, best)
    tests = {
        name: score(split_features(trainer, split, by_style), fitted)
        for name, split in trainer.splits.items()
        if name == "test" or name.startswith("test_")
    }
    lines = [
        f"# Frozen tower + ridge head (no SGD): {config.name} {' '.join(args.overrides)}"
        + (" (features standardized per art style)" if by_style else ""),
        "",
        f"Training pairs {len(t_pairs)}, trunk features {x_pairs.shape[1]}-d (view 0).",
        "",
        "Val rsum by lambda (the choice): "
        + ", ".join(f"{lam:g}: {sweep[lam]['rsum']:.1f}" for lam in args.lambdas)
        + f"; chosen lambda = {best:g}.",
        "",
        *recall_table(tests),
        "",
    ]
    unseen = (config.data.options or {}).get("held_out_style")
    if unseen:
        seen = [
            r["t2i_r5"] for n, r in tests.items() if n.startswith("test_") and n != f"test_{unseen}"
        ]
        ratio = tests[f"test_{unseen}"]["t2i_r5"] / (sum(seen) / len(seen))
        lines += [
            f"Held-out style {unseen}: t2i R@5 {tests[f'test_{unseen}']['t2i_r5']:.1f} vs seen "
            f"styles' mean {sum(seen) / len(seen):.1f}: ratio {ratio:.2f}.",
            "",
        ]
    write_results(args.out, "\n".join(lines), seeds=[config.seed])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
