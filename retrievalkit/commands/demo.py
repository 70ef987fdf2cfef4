"""``retrievalkit demo``: the main job of ``make demo``.

Trains the emoji image <-> text model (recipe ``configs/emoji_vsepp.yaml``),
scores the test split, indexes every emoji (train + val + test), shows the top
hits of a few typed queries and rates search quality against a BM25 keyword
search over the CLDR names and keywords on a fixed query set.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from retrievalkit.commands.train import add_overrides_option

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
        "--config", default="emoji_vsepp", help="recipe path or shipped name (emoji_vsepp)"
    )
    add_overrides_option(parser)
    parser.add_argument(
        "--queries",
        type=Path,
        default=None,
        help="query set TSV (default: the emoji query set shipped in the package)",
    )
    parser.add_argument("--fresh", action="store_true", help="delete --out first")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def emoji_documents(splits: dict[str, Any]) -> tuple[list[str], list[str]]:
    """One BM25 document per emoji: all its CLDR captions joined. Returns (docs, keys)."""
    texts: dict[str, list[str]] = {}
    for split in splits.values():
        for caption, image in zip(split.captions, split.caption_image, strict=True):
            texts.setdefault(split.image_keys[int(image)], []).append(caption)
    keys = list(texts)
    return [" ; ".join(texts[key]) for key in keys], keys


def compare_with_bm25(engine: Any, splits: dict[str, Any], query_path: Path) -> dict[str, Any]:
    """Hit@5 / MRR of the learned model and of BM25 on the query set, per kind."""
    from retrievalkit.index.bm25 import BM25Index
    from retrievalkit.index.query_set import hit_rate_at_k, load_query_set

    queries = load_query_set(query_path)
    docs, keys = emoji_documents(splits)
    bm25 = BM25Index(docs, keys)

    def model_search(mode: str) -> Any:
        return lambda query, k: [hit.key for hit in engine.search_text([query], k, mode=mode)[0]]

    def bm25_search(query: str, k: int) -> list[str]:
        return [hit.key for hit in bm25.search(query, k)]

    return {
        "queries": str(query_path),
        "num_queries": len(queries),
        "model": hit_rate_at_k(model_search("fused"), queries, k=5),
        "model_image_only": hit_rate_at_k(model_search("image"), queries, k=5),
        "bm25": hit_rate_at_k(bm25_search, queries, k=5),
    }


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


def _print_quality(quality: dict[str, Any]) -> None:
    print(
        f"\nSearch quality on {quality['num_queries']} typed queries (hit@5: a right emoji in "
        "the top 5)"
    )
    print("  kind        model (fused)  model (image only)   BM25")
    for kind, fused in quality["model"].items():
        image, bm25 = quality["model_image_only"][kind], quality["bm25"][kind]
        print(
            f"  {kind:<11} {fused['hit_rate']:12.1%}  {image['hit_rate']:17.1%}  "
            f"{bm25['hit_rate']:6.1%}   (n={fused['count']})"
        )


def run(args: argparse.Namespace) -> int:
    from retrievalkit.commands.train import default_device
    from retrievalkit.index.query_set import emoji_query_file
    from retrievalkit.pipeline.search_engine import SearchEngine, build_index_dir
    from retrievalkit.run.config import load_config
    from retrievalkit.train.report import finish_run
    from retrievalkit.train.trainer import Trainer

    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)
    config = load_config(args.config, args.overrides)
    device = args.device or default_device()
    trainer = Trainer(config, args.out, device=device, progress=not args.no_progress)
    trainer.fit(resume=True)  # a finished run is not retrained; a killed one continues
    results = finish_run(trainer)
    index_dir = build_index_dir(
        args.out / "checkpoints" / "best",
        args.out / "index",
        ("train", "val", "test"),
        device=device,
        progress=not args.no_progress,
    )
    engine = SearchEngine(index_dir, device=device)
    _print_recall(results["test"])
    print("\nTop hits for typed queries (retrievalkit search runs/demo/index --text ...):")
    for query, hits in zip(
        EXAMPLE_QUERIES, engine.search_text(list(EXAMPLE_QUERIES), 5), strict=True
    ):
        print(f"  {query!r:<18} " + "  ".join(f"{h.key} {h.score:.2f}" for h in hits))
    query_path = args.queries or emoji_query_file()
    quality = compare_with_bm25(engine, trainer.splits, query_path)
    results["search_quality"] = quality
    (args.out / "metrics.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    _print_quality(quality)
    print(f"\nWrote {args.out}/metrics.json, curves.png, retrieval_grid.png; index in {index_dir}")
    return 0
