"""``retrievalkit search INDEX --text "query" | --image PATH | --queries FILE [-k 10] [--json]``.

``--json`` prints one JSON line per query, ``{"query": ..., "hits": [...]}``, the
shape of the HTTP service's results (an image query's ``query`` is its path).

Text queries rank by ``--mode fused`` (default: image and caption embeddings, both
from the trained model) or ``--mode image`` (the image embeddings alone: what the
trained image tower does by itself). Images sharing a key (an emoji in several art
styles) give one hit, at the best style; ``--all-styles`` lists every image.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retrievalkit.commands.options import (
    add_device_option,
    add_index_argument,
    add_progress_option,
)
from retrievalkit.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("search", help="search an index directory")
    add_index_argument(parser)
    query = parser.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="text -> image search")
    query.add_argument("--image", type=Path, help="image query (see --to)")
    query.add_argument("--queries", type=Path, help="file with one text query per line")
    parser.add_argument(
        "--to",
        choices=["images", "captions"],
        default="images",
        help="for --image: image -> image (default) or image -> text",
    )
    parser.add_argument(
        "--mode",
        choices=["fused", "image"],
        default="fused",
        help="text queries: fused image + caption embeddings (default) or image embeddings only",
    )
    parser.add_argument(
        "--all-styles",
        action="store_true",
        help="one hit per image (every style of an emoji) instead of one per key",
    )
    parser.add_argument("-k", type=int, default=10, help="number of hits (1..1000)")
    parser.add_argument(
        "--json", action="store_true", help='one JSON line per query: {"query", "hits"}'
    )
    add_device_option(parser)
    add_progress_option(parser)
    parser.set_defaults(func=run)


def _print_hits(query: str, hits: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"query": query, "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
        return
    print(f"query: {query}")
    for hit in hits:
        caption = f"  {hit.caption}" if hit.caption else ""
        style = (hit.metadata or {}).get("style")
        style_text = f"  [{style}]" if style else ""
        print(f"  {hit.rank:>3}. {hit.score:.3f}  {hit.key}{style_text}{caption}")


def _read_queries(path: Path) -> list[str]:
    """The non-empty lines of a UTF-8 query file; an unusable file is an InputError."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise InputError(f"{path}: cannot read queries ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); "
            "expected one text query per line"
        ) from None
    queries = [line.strip() for line in lines if line.strip()]
    if not queries:
        raise InputError(f"{path}: no queries (one per line expected)")
    return queries


def run(args: argparse.Namespace) -> int:
    from retrievalkit.run.device import resolve_device
    from retrievalkit.search import SearchEngine

    if not 1 <= args.k <= 1000:
        raise InputError(f"-k must be between 1 and 1000, got {args.k}")
    if args.text is not None and not args.text.strip():
        raise InputError("--text: empty query (expected some text)")
    queries = _read_queries(args.queries) if args.queries is not None else None
    engine = SearchEngine(args.index, device=resolve_device(args.device))
    if args.image is not None:
        labels = [str(args.image)]
        results = engine.search_image(
            [args.image], args.k, target=args.to, distinct_keys=not args.all_styles
        )
    else:
        labels = [args.text] if args.text is not None else queries or []
        results = engine.search_text(
            labels, args.k, mode=args.mode, distinct_keys=not args.all_styles
        )
    for label, hits in zip(labels, results, strict=True):
        _print_hits(label, hits, args.json)
    return 0
