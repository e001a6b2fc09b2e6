"""`python -m api`: serve the intake on API_HOST:API_PORT (127.0.0.1:8000 by default)."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from api.serving import serve
from core import tracing
from core.settings import Settings


def build(settings: Settings) -> FastAPI:
    tracing.configure(settings, "billing-support-api")
    return create_app(settings)


if __name__ == "__main__":
    serve(build, lambda settings: (settings.api_host, settings.api_port))
