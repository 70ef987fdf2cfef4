"""Request size limits as a pure ASGI middleware, checked before any parsing.

A request whose body is larger than ``max_body_bytes`` (by its
``Content-Length`` or, for a chunked body, by the bytes actually received) gets
``413``; one whose path plus query string is longer than ``max_url_bytes`` gets
``414``. Both answer in the service's one error shape (:func:`error_body`).
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]


def error_body(loc: list[str | int], msg: str, kind: str) -> dict[str, Any]:
    """The one error shape of the service: FastAPI's validation shape, without input."""
    return {"detail": [{"loc": loc, "msg": msg, "type": kind}]}


async def _send_error(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class RequestLimits:
    """Reject oversized requests (body, URL) before the app reads them."""

    def __init__(self, app: Any, max_body_bytes: int, max_url_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_url_bytes = max_url_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        url_bytes = len(scope.get("raw_path") or scope["path"].encode()) + len(
            scope.get("query_string", b"")
        )
        if url_bytes > self.max_url_bytes:
            msg = f"URL of {url_bytes} bytes; at most {self.max_url_bytes} accepted"
            await _send_error(send, 414, error_body(["url"], msg, "url_too_long"))
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = f"at most {self.max_body_bytes} bytes accepted"
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            msg = f"body of {int(declared)} bytes; {too_large}"
            await _send_error(send, 413, error_body(["body"], msg, "body_too_large"))
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # read the (bounded) body here, so a chunked body is limited too, then replay it
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.max_body_bytes:
                msg = f"body larger than {self.max_body_bytes} bytes; {too_large}"
                await _send_error(send, 413, error_body(["body"], msg, "body_too_large"))
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)
