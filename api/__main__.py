"""`python -m api`: serve the intake on API_HOST:API_PORT (127.0.0.1:8000 by default)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from api.app import create_app
from core.settings import SettingsError, load_settings


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        settings = load_settings()
        app = create_app(settings)
    except SettingsError as err:
        sys.stderr.write(f"error: {err}\n")
        raise SystemExit(2) from None
    uvicorn.run(app, host=settings.api_host, port=settings.api_port, log_level="info")


if __name__ == "__main__":
    main()
