"""The codec endpoint: Temporal's remote codec protocol, so the Temporal UI shows decrypted payloads
to people who hold the token (`python -m api.codec`; `make run` starts it).

``POST .../encode`` and ``POST .../decode`` take and answer ``{"payloads": [...]}`` (protobuf JSON),
with the ``X-Namespace`` header. The token comes as ``Authorization: Bearer <token>``, or, for the
Temporal UI (which sends Authorization only behind its own OIDC login), as the path segment before
``encode``/``decode``: the UI's codec endpoint is then ``http://127.0.0.1:8234/<token>/``. Requests
are logged without their path, so the token never reaches a log. CORS admits only the UI's origins.
"""

from __future__ import annotations

import hmac
import logging

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import Payloads

from api.serving import serve
from core.codec import CodecError, EncryptionCodec, load_keyring
from core.settings import Settings, required_secret

log = logging.getLogger("api.codec")
MIN_TOKEN_LENGTH = 16
# the UI sends one event's payloads at a time; Temporal caps a payload at 2 MiB
MAX_BODY_BYTES = 16 * 1024 * 1024
OPERATIONS = ("encode", "decode")


def codec_token(settings: Settings) -> SecretStr:
    why = "the codec endpoint decrypts customer data and answers only to its token"
    return required_secret(settings.codec_token, "CODEC_TOKEN", why, MIN_TOKEN_LENGTH)


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status)


def create_codec_app(settings: Settings) -> Starlette:
    """Raises SettingsError when the token or the keys are missing."""
    token = codec_token(settings).get_secret_value().encode()
    codec = EncryptionCodec(load_keyring(settings))

    def authorized(request: Request, segments: list[str]) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            given = segments[-2] if len(segments) >= 2 else ""
        return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token)

    async def handle(request: Request) -> Response:
        segments = [s for s in request.url.path.split("/") if s]
        operation = segments[-1] if segments else ""
        namespace = request.headers.get("x-namespace", "-")
        if operation not in OPERATIONS:
            return _problem(404, "POST to .../encode or .../decode")
        if not authorized(request, segments):
            log.warning(
                "codec %s refused: missing or wrong token (namespace %s)", operation, namespace
            )
            return _problem(401, "a valid bearer token is required")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        payloads = Payloads()
        try:
            json_format.Parse(body or b"{}", payloads, ignore_unknown_fields=True)
        except (json_format.ParseError, DecodeError, ValueError, RecursionError) as err:
            return _problem(400, f'body is not {{"payloads": [...]}} protobuf JSON: {err}')
        try:
            if operation == "encode":
                result = await codec.encode(payloads.payloads)
            else:
                result = await codec.decode(payloads.payloads)
        except CodecError as err:
            log.warning("codec %s failed (namespace %s): %s", operation, namespace, err)
            return _problem(422, str(err))
        log.info("codec %s: %d payloads (namespace %s)", operation, len(result), namespace)
        answer = json_format.MessageToDict(Payloads(payloads=result))
        return JSONResponse({"payloads": answer.get("payloads", [])})

    cors = Middleware(
        CORSMiddleware,
        allow_origins=settings.codec_cors_origins,
        allow_methods=["POST"],
        allow_headers=["Authorization", "Authorization-Extras", "Content-Type", "X-Namespace"],
        allow_credentials=True,
        max_age=600,
    )
    return Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])], middleware=[cors])


def main() -> None:
    # no access log: the UI's requests carry the token in their path
    serve(
        create_codec_app,
        lambda settings: (settings.codec_host, settings.codec_port),
        access_log=False,
    )


if __name__ == "__main__":
    main()
