"""The HTTP edges, as ASGI middleware: body size limits, trusted hosts, and the JSON error
body every refusal has (``{"error": ..., "detail": ...}``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lowercase, as ASGI gives names)."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


async def refuse(scope: Scope, receive: Receive, send: Send, status: int, error: str,
                 detail: str) -> None:
    await JSONResponse({"error": error, "detail": detail}, status_code=status)(
        scope, receive, send)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, declared (``Content-Length``) or
    streamed (chunked).  A body without a declared length is read here, up to the limit,
    before the app sees it: refused while the app parses it, it would be the app's 400
    "error parsing the body"."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:  # the server reads no more than declared: nothing to count
                await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left: the app sees it
                await self.app(scope, _replay([], message, receive), send)
                return
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(body)
            more = message.get("more_body", False)
        await self.app(scope, _replay(chunks, None, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await refuse(scope, receive, send, 413, "request too large",
                     f"the body is over {self.max_bytes} bytes")


def _replay(chunks: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that gives the buffered body as one message (or ``last``), then defers
    to the server's (a disconnect)."""
    pending: list[Message] = [last] if last is not None else [
        {"type": "http.request", "body": b"".join(chunks), "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def host_name(header: str) -> str:
    """The host of a ``Host`` header, without port, lowercased.

    >>> host_name("LocalHost:8000"), host_name("[::1]:8000"), host_name("::1")
    ('localhost', '::1', '::1')
    """
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header if header.count(":") > 1 else header.split(":")[0]


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """``host`` is one of ``allowed``: exact names, ``*`` (any) or ``*.example.com``.

    >>> host_allowed("a.shop.com", ("*.shop.com",)), host_allowed("shop.com", ("*.shop.com",))
    (True, False)
    """
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


class TrustedHosts:
    """Refuse requests whose ``Host`` header is not one of ``allowed`` with 400: a page on
    another site that rebinds its DNS name to this server's address cannot read from it."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...]) -> None:
        self.app, self.allowed = app, allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = (header(scope, b"host") or b"").decode("latin-1")
        if not host_allowed(host_name(raw), self.allowed):
            await refuse(scope, receive, send, 400, "bad request",
                         f"host {raw!r} is not served here (allowed: "
                         f"{', '.join(self.allowed)}; see --allowed-host)")
            return
        await self.app(scope, receive, send)


class JsonCORS(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the API's JSON error body."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        return JSONResponse({"error": "bad request", "detail": bytes(response.body).decode()},
                            status_code=response.status_code)
