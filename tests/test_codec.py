"""The payload codec: AES-GCM with key ids and rotation, its settings, and the codec endpoint the
Temporal UI decodes through (bearer token, CORS)."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr, ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError

from api.codec import create_codec_app
from core.codec import (
    ENCODING,
    KEY_ID,
    CodecError,
    EncryptionCodec,
    Keyring,
    load_keyring,
    new_key,
    write_key_file,
)
from core.models import Customer
from core.sealing import REFUSED, UNSEALED, seal_aware
from core.settings import Settings, SettingsError
from core.temporal import data_converter

OLD = new_key()
NEW = new_key()
TOKEN = "codec-token-for-tests-7d1e0c"
UI = "http://localhost:8233"
CUSTOMER = Customer(
    tenant_id="3f2b8c1e-6d4a-4e7b-9a15-0c2d7e9f1a64",
    name="上海云帆信息科技有限公司",
    email="finance@yunfan.example.cn",
)


def codec(spec: str) -> EncryptionCodec:
    return EncryptionCodec(Keyring.parse(spec, "CODEC_KEYS"))


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


async def test_sealed_with_the_newest_key_and_opened_by_any() -> None:
    before = codec(f"k1:{OLD}")
    after = codec(f"k1:{OLD}\nk2:{NEW}")  # rotated: k2 appended
    [old] = await before.encode([plain(CUSTOMER.name)])
    [new] = await after.encode([plain(CUSTOMER.name)])
    assert old.metadata["encoding"] == ENCODING and old.metadata[KEY_ID] == b"k1"
    assert new.metadata[KEY_ID] == b"k2"
    assert CUSTOMER.name.encode() not in old.SerializeToString()
    assert await after.decode([old, new]) == [plain(CUSTOMER.name)] * 2
    # the same value twice is two different ciphertexts (a fresh nonce each)
    [again] = await after.encode([plain(CUSTOMER.name)])
    assert again.data != new.data


async def test_an_unknown_key_id_is_a_clear_error() -> None:
    [sealed] = await codec(f"k1:{OLD}").encode([plain("x")])
    with pytest.raises(CodecError, match=r"key id 'k1', which is not configured \(configured: k2"):
        await codec(f"k2:{NEW}").decode([sealed])
    # the right id with other key material, or altered bytes: refused, not garbage
    with pytest.raises(CodecError, match="does not authenticate"):
        await codec(f"k1:{NEW}").decode([sealed])
    altered = Payload()
    altered.CopyFrom(sealed)
    altered.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(CodecError, match="does not authenticate"):
        await codec(f"k1:{OLD}").decode([altered])
    # too short to hold a nonce and a tag: the same clear error, never a crash
    for size in (0, 7, 27):
        altered.data = sealed.data[:size]
        with pytest.raises(CodecError, match=f"is {size} bytes: too short"):
            await codec(f"k1:{OLD}").decode([altered])


async def test_unencrypted_payloads_pass_through() -> None:
    """Histories from before encryption (and the checked-in ones) still decode."""
    assert await codec(f"k1:{OLD}").decode([plain("hello")]) == [plain("hello")]


async def test_the_workers_codec_marks_what_came_in_clear() -> None:
    """The worker's codec passes a plain payload on marked, a sealed one opened and unmarked."""
    worker = EncryptionCodec(Keyring.parse(f"k1:{OLD}", "CODEC_KEYS"), mark_unsealed=True)
    [sealed] = await worker.encode([plain("sealed")])
    original = plain("sent in clear")
    opened, marked = await worker.decode([sealed, original])
    assert opened == plain("sealed")
    assert marked.metadata[UNSEALED] == b"1" and marked.data == original.data
    assert UNSEALED not in original.metadata  # the history's own payload is left as it was


async def test_the_workers_converter_knows_which_values_came_in_clear() -> None:
    worker = data_converter(Settings(codec_keys=SecretStr(f"k1:{OLD}")), worker=True)
    [sealed] = await worker.encode([CUSTOMER])
    [forged] = await pydantic_data_converter.encode([CUSTOMER])
    converter = seal_aware(worker.payload_converter)
    assert converter is not None
    opened = await worker.decode([sealed, forged], [Customer, Customer])
    assert opened == [CUSTOMER, CUSTOMER]
    assert not converter.take_unsealed(opened[:1])
    assert converter.take_unsealed(opened[1:])
    assert not converter.take_unsealed(opened[1:])  # asked once: forgotten
    # plain and not valid: refused, and the refusal quotes nothing of the input
    [invalid] = await pydantic_data_converter.encode([{"name": CUSTOMER.name}])
    with pytest.raises(ApplicationError) as refused:
        await worker.decode([invalid], [Customer])
    assert refused.value.type == REFUSED and CUSTOMER.name not in refused.value.message
    # a client's converter reads a plain payload as it is and marks nothing
    assert (
        seal_aware(data_converter(Settings(codec_keys=SecretStr(f"k1:{OLD}"))).payload_converter)
        is None
    )


async def test_a_refusal_of_plain_input_is_readable_without_the_key() -> None:
    """Its sender has no key; every other failure message stays encrypted."""
    converter = data_converter(Settings(codec_keys=SecretStr(f"k1:{OLD}")), worker=True)
    refused, other = Failure(), Failure()
    await converter.encode_failure(ApplicationError("update refused", type=REFUSED), refused)
    await converter.encode_failure(ApplicationError(f"bounced: {CUSTOMER.email}"), other)
    assert refused.message == "update refused" and not refused.stack_trace
    assert refused.application_failure_info.type == REFUSED
    assert other.message == "Encoded failure"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "no payload encryption key"),
        ("k1", "id:base64key"),
        ("k1:not base64!", "key 'k1' is not base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "key 'k1' is 5 bytes, not 32"),
        (f"k1:{OLD},k1:{NEW}", "key id 'k1' is given twice"),
        (f"bad id:{OLD}", "key id 'bad id' is not valid"),
    ],
)
def test_bad_keys_name_the_problem_not_the_key(spec: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        Keyring.parse(spec, "CODEC_KEYS")
    assert str(raised.value).startswith("CODEC_KEYS")
    assert OLD not in str(raised.value) and NEW not in str(raised.value)


def test_keys_from_settings(tmp_path: Path) -> None:
    url_safe = base64.urlsafe_b64encode(base64.b64decode(NEW)).decode()
    keyring = load_keyring(Settings(codec_keys=SecretStr(f"a:{OLD}, b:{url_safe}")))
    assert keyring.ids == ["a", "b"] and keyring.current == "b"
    assert OLD not in repr(keyring)

    key_file = tmp_path / "codec.keys"
    write_key_file(key_file, "local-1")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    from_file = load_keyring(Settings(codec_keys=None, codec_key_file=key_file))
    assert from_file.current == "local-1"
    # CODEC_KEYS wins over the file
    assert load_keyring(
        Settings(codec_keys=SecretStr(f"a:{OLD}"), codec_key_file=key_file)
    ).ids == ["a"]

    missing = Settings(codec_keys=None, codec_key_file=tmp_path / "none.keys")
    with pytest.raises(SettingsError, match="set CODEC_KEYS or CODEC_KEY_FILE"):
        data_converter(missing)


async def test_the_data_converter_encrypts_models_and_failures() -> None:
    converter = data_converter(Settings(codec_keys=SecretStr(f"k1:{OLD}")))
    [payload] = await converter.encode([CUSTOMER])
    assert payload.metadata[KEY_ID] == b"k1"
    assert CUSTOMER.email.encode() not in payload.SerializeToString()
    assert await converter.decode([payload], [Customer]) == [CUSTOMER]

    failure = Failure()
    await converter.encode_failure(ApplicationError(f"bounced: {CUSTOMER.email}"), failure)
    assert CUSTOMER.email.encode() not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert str(decoded) == f"bounced: {CUSTOMER.email}"


# --------------------------------------------------------------------------- the codec endpoint


@pytest_asyncio.fixture
async def endpoint() -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(codec_keys=SecretStr(f"k1:{OLD}"), codec_token=SecretStr(TOKEN))
    transport = httpx.ASGITransport(app=create_codec_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8234") as http:
        yield http


def as_json(*payloads: Payload) -> dict[str, object]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def from_json(body: dict[str, list[dict[str, object]]]) -> list[Payload]:
    out = []
    for item in body["payloads"]:
        metadata = item.get("metadata", {})
        assert isinstance(metadata, dict)
        data = item.get("data", "")
        assert isinstance(data, str)
        out.append(
            Payload(
                metadata={k: base64.b64decode(v) for k, v in metadata.items()},
                data=base64.b64decode(data),
            )
        )
    return out


HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-Namespace": "default"}


async def test_endpoint_round_trip(endpoint: httpx.AsyncClient) -> None:
    original = plain(CUSTOMER.name)
    encoded = await endpoint.post("/encode", json=as_json(original), headers=HEADERS)
    assert encoded.status_code == 200, encoded.text
    [sealed] = from_json(encoded.json())
    assert sealed.metadata[KEY_ID] == b"k1" and CUSTOMER.name.encode() not in sealed.data
    decoded = await endpoint.post("/decode", json=encoded.json(), headers=HEADERS)
    assert decoded.status_code == 200 and from_json(decoded.json()) == [original]
    # what the worker sealed, the endpoint opens (same keys)
    [by_worker] = await codec(f"k1:{OLD}").encode([original])
    opened = await endpoint.post("/decode", json=as_json(by_worker), headers=HEADERS)
    assert from_json(opened.json()) == [original]
    # the Temporal UI: the token in the path; UI 2.54 appends "/decode" to the endpoint
    # (".../<token>/" gives "//decode"), later versions resolve "decode" against it
    for path in (f"/{TOKEN}//decode", f"/{TOKEN}/decode"):
        ui = await endpoint.post(
            f"{path}?preserveStorageRefs=true",
            json=as_json(by_worker),
            headers={"X-Namespace": "default"},
        )
        assert ui.status_code == 200 and from_json(ui.json()) == [original]
    empty = await endpoint.post("/decode", json={"payloads": []}, headers=HEADERS)
    assert empty.json() == {"payloads": []}


async def test_endpoint_refuses_without_the_token(endpoint: httpx.AsyncClient) -> None:
    [sealed] = await codec(f"k1:{OLD}").encode([plain(CUSTOMER.name)])
    body = as_json(sealed)
    attempts = {
        "no token": {"X-Namespace": "default"},
        "wrong token": {**HEADERS, "Authorization": "Bearer not-the-codec-token-at-all"},
        "not bearer": {**HEADERS, "Authorization": f"Basic {TOKEN}"},
    }
    for name, headers in attempts.items():
        # whoever can encode is a key holder (README, "Trust boundary"): encode needs it too
        for operation in ("decode", "encode"):
            response = await endpoint.post(f"/{operation}", json=body, headers=headers)
            assert response.status_code == 401, (name, operation)
            assert CUSTOMER.name not in response.text and TOKEN not in response.text
    wrong_path = await endpoint.post("/not-the-codec-token-at-all/decode", json=body)
    assert wrong_path.status_code == 401
    assert (await endpoint.post(f"/{TOKEN}/encode", json=body)).status_code == 200
    assert (await endpoint.post("/elsewhere", json=body, headers=HEADERS)).status_code == 404


async def test_endpoint_bad_bodies_and_unknown_keys(endpoint: httpx.AsyncClient) -> None:
    bad = await endpoint.post("/decode", content=b"{not json", headers=HEADERS)
    assert bad.status_code == 400 and "payloads" in bad.json()["detail"]
    [foreign] = await codec(f"k9:{NEW}").encode([plain("x")])
    unknown = await endpoint.post("/decode", json=as_json(foreign), headers=HEADERS)
    assert unknown.status_code == 422 and "key id 'k9'" in unknown.json()["detail"]
    [sealed] = await codec(f"k1:{OLD}").encode([plain("x")])
    sealed.data = sealed.data[:5]  # a stored payload cut short: 422, not 500
    short = await endpoint.post("/decode", json=as_json(sealed), headers=HEADERS)
    assert short.status_code == 422 and "too short" in short.json()["detail"]


async def test_endpoint_cors(endpoint: httpx.AsyncClient) -> None:
    preflight = {
        "Origin": UI,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
    }
    allowed = await endpoint.options("/decode", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == UI
    assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    other = await endpoint.options(
        "/decode", headers={**preflight, "Origin": "https://evil.example"}
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    # the answer itself carries the header the browser needs to read it
    answer = await endpoint.post(
        "/decode", json={"payloads": []}, headers={**HEADERS, "Origin": UI}
    )
    assert answer.headers["access-control-allow-origin"] == UI


@pytest.mark.parametrize("origins", ["*", "http://localhost:8233,*", "https://ui.example.cn/"])
def test_the_codec_answers_named_origins_only(origins: str) -> None:
    """It answers with decrypted customer data: never to any page (CORS `*`, with credentials)."""
    with pytest.raises(ValidationError, match="codec_cors_origins"):
        Settings(codec_cors_origins=origins)


def test_endpoint_needs_a_token_and_keys(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CODEC_TOKEN is not set"):
        create_codec_app(Settings(codec_keys=SecretStr(f"k1:{OLD}"), codec_token=None))
    with pytest.raises(SettingsError, match="at least 16"):
        create_codec_app(Settings(codec_keys=SecretStr(f"k1:{OLD}"), codec_token=SecretStr("x")))
    no_keys = Settings(codec_keys=None, codec_key_file=tmp_path / "x", codec_token=SecretStr(TOKEN))
    with pytest.raises(SettingsError, match="CODEC_KEYS"):
        create_codec_app(no_keys)
