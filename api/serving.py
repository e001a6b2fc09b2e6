"""Serve one of the ASGI apps from the settings (`python -m api` and `python -m api.codec`), and
read a request's body within a limit."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive

from core import logs
from core.settings import Settings, SettingsError, load_settings


def serve(
    build: Callable[[Settings], ASGIApp],
    address: Callable[[Settings], tuple[str, int]],
    **options: Any,
) -> None:
    """Build the app from the settings (exit 2 naming what is wrong) and serve it until stopped."""
    try:
        settings = load_settings()
        logs.configure(settings.log_format)
        app = build(settings)
    except SettingsError as err:
        sys.stderr.write(f"error: {err}\n")
        raise SystemExit(2) from None
    if settings.log_format == "json":
        options.setdefault("log_config", None)  # uvicorn's loggers go through the JSON handler
    host, port = address(settings)
    logging.getLogger("api").info("serving on http://%s:%d/", host, port)
    uvicorn.run(app, host=host, port=port, log_level="info", **options)


async def read_body(receive: Receive, headers: Headers, limit: int) -> bytes | None:
    """The whole body, or None when it is larger than ``limit``: read no further than that,
    whatever Content-Length says (or not, when chunked); a Content-Length of absurd length is not
    parsed as a number at all."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
