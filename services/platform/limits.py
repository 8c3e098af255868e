"""The request body limit, enforced at the edge: before routing, authentication or parsing.

`BodyLimit` is pure ASGI middleware. A declared `Content-Length` over the limit is answered
413 at once, without reading a byte of the body; a body without one (chunked) is counted
as it streams in and cut off with a 413 the moment it passes the limit. Any answer given
before the body was read to its end (a 413, or a 401 from a route that checks the key
before it reads) closes the connection, so the rest of the upload is never read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.platform.problems import Problem, problem_response


def too_large(limit: int, *, close: bool = False) -> Problem:
    """The 413 every service answers for a body over its limit (`close`: the body is left unread)."""
    return Problem(413, "Request body too large", f"the limit is {limit} bytes", kind="too-large",
                   headers={"connection": "close"} if close else None, limit_bytes=limit)


CLOSE = (b"connection", b"close")


def body_framing(scope: Scope) -> tuple[int | None, bool]:
    """(the declared Content-Length if valid, whether a body follows the head)."""
    declared: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            declared = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked or bool(declared)


class BodyLimit:
    """Refuse request bodies over `limit` bytes, from Content-Length and while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        declared, has_body = body_framing(scope)
        if declared is not None and declared > limit:
            await problem_response(too_large(limit, close=True), scope.get("path"))(scope, receive, send)
            return
        if not has_body:
            await self.app(scope, receive, send)
            return
        received = 0
        finished = False

        async def counted() -> Message:
            nonlocal received, finished
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
                finished = not message.get("more_body", False)
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and not finished:
                message["headers"] = [*message.get("headers", []), CLOSE]
            await send(message)

        await self.app(scope, counted, closing)
