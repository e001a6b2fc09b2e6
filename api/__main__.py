"""`python -m api`: serve the intake on API_HOST:API_PORT (127.0.0.1:8000 by default)."""

from __future__ import annotations

from api.app import create_app
from api.serving import serve

if __name__ == "__main__":
    serve(create_app, lambda settings: (settings.api_host, settings.api_port))
