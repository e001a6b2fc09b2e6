"""`python -m web`: serve the workspace on WEB_HOST:WEB_PORT (127.0.0.1:8010 by default)."""

from __future__ import annotations

from api.serving import serve
from web.app import create_app

if __name__ == "__main__":
    serve(create_app, lambda settings: (settings.web_host, settings.web_port))
