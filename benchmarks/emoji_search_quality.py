"""Search quality of one emoji checkpoint on the dev and test parts of the query set.

    python benchmarks/emoji_search_quality.py RUN_OR_CHECKPOINT --index DIR [--weight W]

Builds an index of every image (all styles; skipped when DIR already holds one),
then prints hit@5 of the four rankings of ``retrievalkit.search.quality``
(trained model image-only, hybrid fused, captions only, BM25) per query kind,
and the dev sweep of the fusion weight. Only the test part is for reporting.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from retrievalkit.eval.query_set import emoji_query_file
    from retrievalkit.pipeline.build import load_splits
    from retrievalkit.pipeline.items import every_image_splits
    from retrievalkit.run.provenance import stdout_to_results
    from retrievalkit.search import (
        DEFAULT_IMAGE_WEIGHT,
        SearchEngine,
        build_index_dir,
    )
    from retrievalkit.search.quality import compare_rankings, weight_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--weight", type=float, default=DEFAULT_IMAGE_WEIGHT)
    parser.add_argument("--queries", type=Path, default=None)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results file (default: results/emoji/search_quality.md)",
    )
    args = parser.parse_args()
    path = args.checkpoint
    if (path / "checkpoints" / "best").is_dir():
        path = path / "checkpoints" / "best"
    if not (args.index / "retrieval.json").exists():
        from retrievalkit.pipeline.load import load_model

        splits = load_splits(load_model(path).config.data)
        build_index_dir(path, args.index, every_image_splits(list(splits)), progress=False)
    with stdout_to_results(args.out or "results/emoji/search_quality.md"):
        engine = SearchEngine(args.index)
        splits = load_splits(engine.loaded.config.data)
        queries = args.queries or emoji_query_file()
        out = {"checkpoint": str(path)}
        for part in ("dev", "test"):
            out[part] = compare_rankings(engine, splits, queries, part, args.weight)
        out["fusion_weight_sweep_dev"] = weight_sweep(engine, queries, "dev")
        print(json.dumps(out))
        for part in ("dev", "test"):
            quality = out[part]
            print(f"\n{part}: {quality['num_queries']} queries, hit@5 % (weight {args.weight})")
            print("kind        image-only  fused  captions  BM25")
            for kind in ("literal", "paraphrase", "all"):
                cells = [
                    100 * quality[r][kind]["hit_rate"]
                    for r in ("image", "fused", "captions", "bm25")
                ]
                print(f"{kind:<11} " + "  ".join(f"{c:8.1f}" for c in cells))


if __name__ == "__main__":
    main()
