"""How far a trained image head can go when the text tower is frozen (issue 18).

    OMP_NUM_THREADS=1 python benchmarks/text_ceiling.py emoji_lite0_clip \\
        [--set KEY=VALUE ...] [--out results/emoji/towers/text_ceiling.md]

With a frozen text tower (MiniLM, identity head) the captions' embeddings are fixed;
an image head can at best put each image where its own captions are. This script
scores that "caption-centroid oracle": each image's embedding is the L2-normalized
mean of its own captions' embeddings (it reads the answers, so it is a reference
point, not a model), under the recipe's protocol on val and on each test split.
Images drawn from the same emoji in several styles get the same point, so the oracle
shows how well the frozen text space separates the split's emoji from each other,
whatever the image tower. Writes a results file with the provenance header.
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


def caption_centroids(text: Tensor, caption_image: Tensor, n_images: int) -> Tensor:
    """``text [M, D]``, ``caption_image [M]`` -> ``[N, D]``: each image's normalized
    mean caption embedding."""
    sums = torch.zeros(n_images, text.shape[1]).index_add_(0, caption_image, text)
    return torch.nn.functional.normalize(sums, dim=1)


def oracle_scores(trainer: Any, split: Any, protocol: str) -> dict[str, Any]:
    """The protocol's scores of the caption-centroid oracle on one split."""
    from retrievalkit.eval import evaluate_protocol
    from retrievalkit.pipeline.embed import embed_captions

    with torch.no_grad():
        text = embed_captions(trainer.model.encode_text, split.captions)
    caption_image = torch.as_tensor(split.caption_image, dtype=torch.long)
    images = caption_centroids(text, caption_image, len(split.images))
    return dict(evaluate_protocol(protocol, images, text, caption_image))


def main(argv: list[str] | None = None) -> int:
    from frozen_tower_lstsq import recall_table  # benchmarks/ is sys.path[0] when run

    from retrievalkit.run.config import load_config
    from retrievalkit.run.provenance import write_results
    from retrievalkit.training.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = load_config(args.recipe, args.overrides)
    with tempfile.TemporaryDirectory(prefix="ceiling_") as work:
        trainer = Trainer(config, Path(work) / "run", progress=False)
    records = {
        name: oracle_scores(trainer, split, config.eval.protocol)
        for name, split in trainer.splits.items()
        if name in ("val", "test") or name.startswith("test_")
    }
    lines = [
        f"# Caption-centroid oracle (frozen text tower): {config.name} " + " ".join(args.overrides),
        "",
        "Each image embedded at the normalized mean of its own captions' embeddings "
        "(reads the answers: a reference point, not a model).",
        "",
        *recall_table(records),
        "",
    ]
    write_results(args.out, "\n".join(lines), seeds=[config.seed])
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
