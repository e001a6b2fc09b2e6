"""Serve one of the ASGI apps from the settings: `python -m api` and `python -m api.codec`."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp

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
