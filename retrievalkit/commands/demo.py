"""``retrievalkit demo``: the main job of ``make demo``.

Trains the emoji image <-> text model on every available art style (recipe
``configs/emoji_lite0_clip.yaml``: a frozen ImageNet EfficientNet-Lite0 whose
features are extracted once and cached, an MLP head trained into the frozen MiniLM
space with InfoNCE; chosen on the val split, ``results/tower_select/``; the small
CNN from scratch is ``--recipe emoji_vsepp``), scores the test split (and each style's view of
it), indexes every image of every emoji (train + val + test, all styles), shows
the top hits of a few typed queries and rates search quality on the test part of
a typed query set: the trained model alone (image embeddings), hybrid (fused with
caption embeddings), captions alone and BM25. The dev part of the query set is
scored too (metrics.json) and is the only one used to choose settings.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from retrievalkit.commands.options import (
    add_device_option,
    add_progress_option,
    add_set_option,
    show_progress,
)

EXAMPLE_QUERIES = (
    "sad rainy day",
    "fingers crossed",
    "omg",
    "yay",
    "brb",
    "i am so hungry",
    "good night",
    "birthday cake",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="train, evaluate, index and search emoji")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument(
        "--recipe",
        default="emoji_lite0_clip",
        help="recipe path or shipped name (emoji_lite0_clip; the small CNN: emoji_vsepp)",
    )
    parser.add_argument("--config", dest="recipe", help=argparse.SUPPRESS)  # the old name
    add_set_option(parser)
    parser.add_argument(
        "--queries",
        type=Path,
        default=None,
        help="query set TSV (default: the emoji query set shipped in the package); its "
        "test part is reported, its dev part is scored for choosing settings",
    )
    parser.add_argument("--fresh", action="store_true", help="delete --out first")
    add_device_option(parser)
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _print_recall(test: dict[str, Any]) -> None:
    print(
        "\nTest split (emoji never seen in training): "
        f"{test.get('n_images')} images, {test.get('n_captions')} captions"
    )
    print("              R@1    R@5   R@10   medr")
    for direction, name in (("i2t", "image->text"), ("t2i", "text->image")):
        print(
            f"  {name:<11}"
            + "".join(f"{test[f'{direction}_r{k}']:6.1f} " for k in (1, 5, 10))
            + f"{test[f'{direction}_medr']:5.0f}"
        )
    print(f"  rsum {test['rsum']:.1f}")


def _print_styles(per_style: dict[str, dict[str, Any]]) -> None:
    if not per_style:
        return
    print("\nTest emoji by art style (text->image R@5, image->text R@5, images):")
    for style, row in per_style.items():
        print(f"  {style:<9} {row['t2i_r5']:6.1f} {row['i2t_r5']:6.1f}   {row['n_images']}")


def _print_quality(quality: dict[str, Any]) -> None:
    print(
        f"\nSearch quality, {quality['num_queries']} test queries (hit@5: a right emoji in "
        "the top 5; 'paraphrase' = no word shared with any target's CLDR name/keywords,\n"
        "so BM25 scores 0 there by construction):"
    )
    print("  kind        trained model  hybrid (fused   captions only    BM25")
    print(f"              (image only)   w={quality['image_weight']:.1f})")
    for kind, image in quality["image"].items():
        fused, captions = quality["fused"][kind], quality["captions"][kind]
        print(
            f"  {kind:<11} {image['hit_rate']:12.1%}  {fused['hit_rate']:13.1%}  "
            f"{captions['hit_rate']:13.1%}  {quality['bm25'][kind]['hit_rate']:6.1%}"
            f"   (n={image['count']})"
        )


def run(args: argparse.Namespace) -> int:
    from retrievalkit.eval.query_set import emoji_query_file
    from retrievalkit.pipeline.items import every_image_splits
    from retrievalkit.run.config import load_config
    from retrievalkit.run.device import resolve_device
    from retrievalkit.search import (
        DEFAULT_IMAGE_WEIGHT,
        SearchEngine,
        build_index_dir,
    )
    from retrievalkit.search.index_dir import describe
    from retrievalkit.search.quality import score_search
    from retrievalkit.training.report import finish_run, style_scores
    from retrievalkit.training.trainer import Trainer

    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    config = load_config(args.recipe, args.overrides)
    device = resolve_device(args.device)
    progress = show_progress(args)
    trainer = Trainer(config, args.out, device=device, progress=progress)
    trainer.fit(resume=True)  # a finished run is not retrained; a killed one continues
    results = finish_run(trainer)
    results["test_by_style"] = style_scores(trainer)
    index_dir = build_index_dir(
        args.out / "checkpoints" / "best",
        args.out / "index",
        every_image_splits(list(trainer.splits)),  # what `index build RUN` indexes too
        device=device,
        progress=progress,
    )
    engine = SearchEngine(index_dir, device=device)
    _print_recall(results["test"])
    print(f"\nIndex: {describe(engine.manifest)}")
    _print_styles(results["test_by_style"])
    print("\nTop hits for typed queries (retrievalkit search runs/demo/index --text ...):")
    for query, hits in zip(
        EXAMPLE_QUERIES, engine.search_text(list(EXAMPLE_QUERIES), 5), strict=True
    ):
        print(f"  {query!r:<18} " + "  ".join(f"{h.key} {h.score:.2f}" for h in hits))
    query_path = args.queries or emoji_query_file()
    results.update(score_search(engine, trainer.splits, query_path, DEFAULT_IMAGE_WEIGHT))
    quality = results["search_quality"]
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    _print_quality(quality)
    print(f"\nWrote {args.out}/metrics.json, curves.png, retrieval_grid.png; index in {index_dir}")
    return 0
