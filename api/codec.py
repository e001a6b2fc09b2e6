"""The codec endpoint: Temporal's remote codec protocol, so the Temporal UI and operators' tools
show decrypted payloads (`python -m api.codec`; `make run` starts it). It only decodes.

``POST .../decode`` takes and answers ``{"payloads": [...]}`` (protobuf JSON), with the
``X-Namespace`` header. Who may read: a caller sending ``Authorization: Bearer <CODEC_TOKEN>``
(the `temporal` CLI's ``--codec-auth``, from the environment: TEMPORAL_CODEC_AUTH), and, with
CODEC_LOCAL_UI on a loopback host (`make run`), a Temporal UI that has no sign-in of its own. The
credential is never in a URL: the UI's settings name the endpoint and nothing more.

``.../encode`` answers 403: sealing is acting (a sealed payload is taken as a key holder's,
workflows/sealed.py), and a payload sealed here would be sealed to no workflow anyway. People act
through the workspace, the CLI and the API, which seal what they send themselves.
"""

from __future__ import annotations

import hmac
import ipaddress
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

from api.serving import read_body, serve
from core.codec import CodecError, EncryptionCodec, load_keyring
from core.settings import Settings, SettingsError, required_secret

log = logging.getLogger("api.codec")
MIN_TOKEN_LENGTH = 16
# the UI sends one event's payloads at a time; Temporal caps a payload at 2 MiB
MAX_BODY_BYTES = 16 * 1024 * 1024
ENCODE_OFF = (
    "this endpoint only decodes: sealing is acting, and people act through the workspace, "
    "starter.py or the API"
)


def codec_token(settings: Settings) -> SecretStr:
    why = "the codec endpoint decrypts customer data and answers only to its token"
    return required_secret(settings.codec_token, "CODEC_TOKEN", why, MIN_TOKEN_LENGTH)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status)


def create_codec_app(settings: Settings) -> Starlette:
    """Raises SettingsError when the token or the keys are missing, or CODEC_LOCAL_UI is set on a
    host others reach."""
    token = codec_token(settings).get_secret_value().encode()
    if settings.codec_local_ui and not _loopback(settings.codec_host):
        raise SettingsError(
            f"CODEC_LOCAL_UI decodes for anyone who reaches the endpoint: CODEC_HOST must be a "
            f"loopback address with it, not {settings.codec_host!r}"
        )
    codec = EncryptionCodec(load_keyring(settings))

    def authorized(request: Request) -> bool:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and given.strip():
            return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token)
        return settings.codec_local_ui

    async def handle(request: Request) -> Response:
        segments = [s for s in request.url.path.split("/") if s]
        operation = segments[-1] if segments else ""
        namespace = request.headers.get("x-namespace", "-")[:100]
        if operation == "encode":
            log.warning("codec encode refused (namespace %s): the endpoint only decodes", namespace)
            return _problem(403, ENCODE_OFF)
        if operation != "decode":
            return _problem(404, "POST to .../decode")
        if not authorized(request):
            log.warning("codec decode refused: missing or wrong token (namespace %s)", namespace)
            return _problem(401, "a valid bearer token is required")
        body = await read_body(request.receive, request.headers, MAX_BODY_BYTES)
        if body is None:
            return _problem(413, f"body over {MAX_BODY_BYTES} bytes")
        payloads = Payloads()
        try:
            json_format.Parse(body or b"{}", payloads, ignore_unknown_fields=True)
        except (json_format.ParseError, DecodeError, ValueError, RecursionError) as err:
            return _problem(400, f'body is not {{"payloads": [...]}} protobuf JSON: {err}')
        try:
            result = await codec.decode(payloads.payloads)
        except CodecError as err:
            log.warning("codec decode failed (namespace %s): %s", namespace, err)
            return _problem(422, str(err))
        log.info("codec decode: %d payloads (namespace %s)", len(result), namespace)
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
    # no access log: a UI configured as before this release sends a token in its path
    serve(
        create_codec_app,
        lambda settings: (settings.codec_host, settings.codec_port),
        access_log=False,
    )


if __name__ == "__main__":
    main()
