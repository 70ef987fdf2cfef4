"""``retrievalkit serve INDEX [--host 127.0.0.1] [--port 8000] [--max-k 100] [limits]``."""

from __future__ import annotations

import argparse
import logging

from retrievalkit.commands.options import add_device_option, add_index_argument, add_progress_option

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="HTTP search service over an index directory")
    add_index_argument(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-k", type=int, default=100, help="largest k a request may ask")
    parser.add_argument("--max-queries", type=int, default=64, help="queries per POST /search")
    parser.add_argument(
        "--max-query-chars", type=int, default=1000, help="longest query text (characters)"
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=65536, help="largest request body (413 above)"
    )
    parser.add_argument(
        "--max-url-bytes", type=int, default=8192, help="longest path + query string (414 above)"
    )
    parser.add_argument(
        "--model-access",
        choices=["lock", "batch"],
        default="lock",
        help="one model pass per request (lock) or per group of waiting requests (batch)",
    )
    add_device_option(parser)
    add_progress_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retrievalkit.errors import InputError
    from retrievalkit.run.device import resolve_device

    for option in ("max_k", "max_queries", "max_query_chars", "max_body_bytes", "max_url_bytes"):
        if getattr(args, option) < 1:
            flag = "--" + option.replace("_", "-")
            raise InputError(f"{flag} must be >= 1, got {getattr(args, option)}")
    try:
        import uvicorn

        from retrievalkit.serve.app import app_for_index
    except ImportError as err:
        raise InputError(
            f"serving needs the `serve` extra: pip install 'retrievalkit[serve]' ({err})"
        ) from None
    app = app_for_index(
        args.index,
        device=resolve_device(args.device),
        max_k=args.max_k,
        max_queries=args.max_queries,
        max_query_chars=args.max_query_chars,
        max_body_bytes=args.max_body_bytes,
        max_url_bytes=args.max_url_bytes,
        model_access=args.model_access,
    )
    log.info("serving %s on http://%s:%d/", args.index, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
