"""A limit on HTTP request bodies (``ANXIN_HTTP_MAX_BODY_BYTES``): larger ones get 413 before any
handler reads them whole, whether they announce their length or stream it in chunks."""

from __future__ import annotations

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large_detail(limit: int) -> str:
    return f"请求体过大 / request body too large: at most {limit} bytes (ANXIN_HTTP_MAX_BODY_BYTES)"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # a chunked body that outgrows the limit
                    raise HTTPException(413, too_large_detail(self.max_bytes))
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({"detail": too_large_detail(self.max_bytes)})
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
