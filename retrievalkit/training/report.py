"""After training: test scores of the best checkpoint, curves and a retrieval grid."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from retrievalkit.pipeline.embed import embed_captions, embed_model_images, model_device
from retrievalkit.run.checkpoint import load_checkpoint
from retrievalkit.training.plots import (
    plot_curves,
    plot_image_to_image_grid,
    plot_text_to_image_grid,
    top_k,
)
from retrievalkit.training.reconstructions import save_reconstructions
from retrievalkit.training.trainer import Trainer

log = logging.getLogger(__name__)


def retrieval_grid(
    trainer: Trainer, split: Any, out_path: Path, num_queries: int = 8, k: int = 5
) -> Path:
    """A PNG of a few test queries with their top-k hits, correct ones in green."""
    model, transform = trainer.model, trainer.eval_transform
    generator = torch.Generator().manual_seed(trainer.config.seed)
    model.eval()
    with torch.no_grad():
        if model.has_text:
            picks = torch.randperm(len(split.captions), generator=generator)[:num_queries]
            queries = [split.captions[int(i)] for i in picks]
            img = embed_model_images(model, split.images, transform)
            txt = embed_captions(model.encode_text, queries)
            hits = top_k(txt, img, k)
            own = torch.as_tensor(split.caption_image)[picks]
            return plot_text_to_image_grid(
                queries, hits, hits == own[:, None], split.images, out_path
            )
        emb = embed_model_images(model, split.images, transform)
        picks = torch.randperm(emb.shape[0], generator=generator)[:num_queries]
        hits = top_k(emb[picks], emb, k + 1)
        hits = torch.stack([row[row != q][:k] for row, q in zip(hits, picks, strict=True)])
        labels = torch.as_tensor(split.labels)
        correct = labels[hits] == labels[picks][:, None]
        return plot_image_to_image_grid(picks, hits, correct, split.images, out_path)


def reconstruction_pictures(
    trainer: Trainer, split: Any, out_dir: Path, num_pairs: int = 8
) -> list[Path]:
    """For a model that reconstructs its inputs (mFSR: it has ``reconstruction_target``):
    ``reconstructions.png`` and ``captions.txt`` of a few test pairs (each image
    with its first caption, images picked with the run's seed); else nothing."""
    model = trainer.model
    if not callable(getattr(model, "reconstruction_target", None)):
        return []
    generator = torch.Generator().manual_seed(trainer.config.seed)
    picks = torch.randperm(len(split.images), generator=generator)[:num_pairs].tolist()
    first_caption = {}
    for caption, image in zip(split.captions, split.caption_image, strict=True):
        first_caption.setdefault(int(image), caption)
    picks = [i for i in picks if i in first_caption]
    device = model_device(model)
    images = torch.stack([trainer.eval_transform(split.images.load(i)) for i in picks])
    return save_reconstructions(
        model,
        images.to(device),
        [first_caption[i] for i in picks],
        [split.image_keys[i] for i in picks],
        out_dir,
    )


def finish_run(trainer: Trainer, test_split_name: str | None = None) -> dict[str, Any]:
    """Load the best checkpoint, score the test split, write metrics.json and PNGs."""
    run_dir = trainer.run_dir
    best = load_checkpoint(run_dir / "checkpoints" / "best")
    trainer.model.load_state_dict(best.prefixed("model"))
    name = test_split_name or trainer.config.data.test_split
    results: dict[str, Any] = {
        "recipe": trainer.config.name,
        "best_epoch": trainer.state.best_epoch,
        "best_val": trainer.state.best_score,
        "val_metric": trainer.config.eval.metric,
        "epochs": trainer.state.epoch,
        "skipped_steps": trainer.state.skipped_steps,
    }
    if name in trainer.splits:
        split = trainer.splits[name]
        results["test"] = trainer.evaluate(split, progress=trainer.progress)
        retrieval_grid(trainer, split, run_dir / "retrieval_grid.png")
        reconstruction_pictures(trainer, split, run_dir)
    else:
        log.warning("no %r split: no test scores", name)
    (run_dir / "metrics.json").write_text(json.dumps(results, indent=2))
    plot_curves(trainer.run_log, run_dir / "curves.png", title=trainer.config.name)
    return results


def style_scores(trainer: Trainer) -> dict[str, dict[str, Any]]:
    """Test scores of the model on each style's view of the test split (``test_<style>``)."""
    return {
        name.removeprefix("test_"): trainer.evaluate(split)
        for name, split in trainer.splits.items()
        if name.startswith("test_")
    }
