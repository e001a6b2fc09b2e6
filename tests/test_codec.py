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
from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext
from temporalio.exceptions import ApplicationError

from api.codec import create_codec_app
from core.codec import (
    ENCODING,
    KEY_ID,
    WORKFLOW_ID,
    CodecError,
    EncryptionCodec,
    Keyring,
    load_keyring,
    new_key,
    write_key_file,
)
from core.models import Customer
from core.sealing import (
    LEGACY,
    REFUSED,
    UNSEALED,
    Seal,
    SealState,
    Stamp,
    Stamped,
    seal_aware,
)
from core.settings import Settings, SettingsError
from core.temporal import data_converter
from tests.codec_support import seal_legacy

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
    assert marked.metadata[UNSEALED] == b"clear" and marked.data == original.data
    assert UNSEALED not in original.metadata  # the history's own payload is left as it was


PLACE = WorkflowSerializationContext(namespace="default", workflow_id="collections-G000123456")
ELSEWHERE = WorkflowSerializationContext(namespace="default", workflow_id="collections-G000999999")


async def test_a_payload_opens_as_sealed_only_in_its_place() -> None:
    """Sealed to its namespace and workflow (the SDK's serialization context): copied into
    another workflow's history it opens there marked, for the workflow to refuse."""
    keys = Keyring.parse(f"k1:{OLD}", "CODEC_KEYS")
    client = EncryptionCodec(keys).with_context(PLACE)
    worker = EncryptionCodec(keys, mark_unsealed=True)
    [sealed] = await client.encode([plain("waive: goodwill for A only")])
    assert sealed.metadata[WORKFLOW_ID] == b"collections-G000123456"
    [here] = await worker.with_context(PLACE).decode([sealed])
    assert here == plain("waive: goodwill for A only")
    [there] = await worker.with_context(ELSEWHERE).decode([sealed])
    assert there.metadata[UNSEALED] == b"foreign"
    # an activity's payloads belong to the workflow that runs it
    activity = ActivitySerializationContext(
        namespace="default",
        activity_id="1",
        activity_type="send_email",
        activity_task_queue="billing",
        workflow_id="collections-G000123456",
        workflow_type="CollectionsWorkflow",
        is_local=False,
    )
    [for_activity] = await worker.with_context(activity).decode([sealed])
    assert UNSEALED not in for_activity.metadata
    # another namespace is another place
    other = WorkflowSerializationContext(namespace="staging", workflow_id=PLACE.workflow_id)
    [in_other] = await worker.with_context(other).decode([sealed])
    assert in_other.metadata[UNSEALED] == b"foreign"
    # the place named beside the ciphertext is authenticated with it: rewritten, nothing opens
    moved = Payload()
    moved.CopyFrom(sealed)
    moved.metadata[WORKFLOW_ID] = b"collections-G000999999"
    [broken] = await worker.with_context(ELSEWHERE).decode([moved])
    assert broken.metadata[UNSEALED] == b"broken"
    with pytest.raises(CodecError, match="does not authenticate"):
        await EncryptionCodec(keys).decode([moved])
    # the UI and operators' tools open a payload wherever it lives (no context)
    assert await EncryptionCodec(keys).decode([sealed]) == [plain("waive: goodwill for A only")]


async def test_what_does_not_open_never_fails_the_worker() -> None:
    """A payload claiming to be sealed that does not open, under an unknown key id or none that
    fits, reaches the worker marked broken: its workflow refuses it and goes on serving."""
    worker = EncryptionCodec(Keyring.parse(f"k1:{OLD}", "CODEC_KEYS"), mark_unsealed=True)
    fake = Payload(metadata={"encoding": ENCODING, KEY_ID: b"k1"}, data=b"\x00" * 64)
    unknown = Payload(metadata={"encoding": ENCODING, KEY_ID: b"k7"}, data=b"\x00" * 64)
    short = Payload(metadata={"encoding": ENCODING}, data=b"")
    for payload in (fake, unknown, short):
        [marked] = await worker.with_context(PLACE).decode([payload])
        assert marked.metadata[UNSEALED] == b"broken" and marked.data == payload.data


async def test_a_payload_sealed_before_places_opens_marked_legacy() -> None:
    keyring = Keyring.parse(f"k1:{OLD}", "CODEC_KEYS")
    old = seal_legacy(keyring, plain("from the release before"))
    [opened] = await EncryptionCodec(keyring, mark_unsealed=True).with_context(PLACE).decode([old])
    assert opened.metadata[LEGACY] == b"1" and opened.data == plain("x").data.replace(
        b'"x"', b'"from the release before"'
    )
    assert await EncryptionCodec(keyring).decode([old]) == [plain("from the release before")]


async def test_the_workers_converter_knows_each_values_seal() -> None:
    worker = data_converter(Settings(codec_keys=SecretStr(f"k1:{OLD}")), worker=True)
    client = data_converter(Settings(codec_keys=SecretStr(f"k1:{OLD}")))
    stamp = Stamp("update:waive", "01KBCW3Z5Q8RDJ5Y1T2V3X4W9N")
    [stamped] = await client.with_context(PLACE).encode([Stamped(CUSTOMER, stamp)])
    assert CUSTOMER.name.encode() not in stamped.SerializeToString()
    [internal] = await client.with_context(PLACE).encode([CUSTOMER])
    [forged] = await pydantic_data_converter.encode([CUSTOMER])
    [elsewhere] = await client.with_context(ELSEWHERE).encode([Stamped(CUSTOMER, stamp)])
    converter = seal_aware(worker.payload_converter)
    assert converter is not None
    opened = await worker.with_context(PLACE).decode(
        [stamped, internal, forged, elsewhere], [Customer] * 4
    )
    assert opened == [CUSTOMER] * 4
    assert converter.take_seals(opened) == [
        Seal(SealState.SEALED, "update:waive", "01KBCW3Z5Q8RDJ5Y1T2V3X4W9N"),
        Seal(SealState.SEALED),
        Seal(SealState.CLEAR),
        Seal(SealState.FOREIGN, "update:waive", "01KBCW3Z5Q8RDJ5Y1T2V3X4W9N"),
    ]
    # asked once: forgotten (and nothing of what the worker made itself was kept)
    assert converter.take_seals(opened) == [Seal(SealState.SEALED)] * 4
    # plain and not valid: refused, and the refusal quotes nothing of the input
    [invalid] = await pydantic_data_converter.encode([{"name": CUSTOMER.name}])
    with pytest.raises(ApplicationError) as refused:
        await worker.decode([invalid], [Customer])
    assert refused.value.type == REFUSED and CUSTOMER.name not in refused.value.message
    # a client's converter marks nothing
    assert seal_aware(client.payload_converter) is None


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
    # the keys are drawn afresh in each process, and xdist's workers must collect the same ids
    ids=["none", "no-key", "not-base64", "short", "id-twice", "bad-id"],
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


async def test_endpoint_decodes_and_never_seals(endpoint: httpx.AsyncClient) -> None:
    original = plain(CUSTOMER.name)
    # what the worker sealed, the endpoint opens (same keys), wherever it was sealed to
    [by_worker] = await codec(f"k1:{OLD}").encode([original])
    [in_place] = await codec(f"k1:{OLD}").with_context(PLACE).encode([original])
    opened = await endpoint.post("/decode", json=as_json(by_worker, in_place), headers=HEADERS)
    assert opened.status_code == 200, opened.text
    assert from_json(opened.json()) == [original, original]
    # UI 2.54 appends "/decode" to the endpoint (".../" gives "//decode")
    ui = await endpoint.post(
        "http://127.0.0.1:8234//decode?preserveStorageRefs=true",
        json=as_json(by_worker),
        headers=HEADERS,
    )
    assert ui.status_code == 200 and from_json(ui.json()) == [original]
    empty = await endpoint.post("/decode", json={"payloads": []}, headers=HEADERS)
    assert empty.json() == {"payloads": []}
    # sealing is acting: whatever the credential, the endpoint seals nothing
    for headers in (HEADERS, {"X-Namespace": "default"}):
        refused = await endpoint.post("/encode", json=as_json(original), headers=headers)
        assert refused.status_code == 403 and "only decodes" in refused.json()["detail"]
        assert CUSTOMER.name not in refused.text


async def test_endpoint_refuses_without_the_token(endpoint: httpx.AsyncClient) -> None:
    [sealed] = await codec(f"k1:{OLD}").encode([plain(CUSTOMER.name)])
    body = as_json(sealed)
    attempts = {
        "no token": {"X-Namespace": "default"},
        "wrong token": {**HEADERS, "Authorization": "Bearer not-the-codec-token-at-all"},
        "not bearer": {**HEADERS, "Authorization": f"Basic {TOKEN}"},
    }
    for name, headers in attempts.items():
        response = await endpoint.post("/decode", json=body, headers=headers)
        assert response.status_code == 401, name
        assert CUSTOMER.name not in response.text and TOKEN not in response.text
    # the token in a URL (as the UI's settings once held it) is no credential
    for path in (f"/{TOKEN}/decode", f"/{TOKEN}//decode"):
        assert (await endpoint.post(path, json=body)).status_code == 401
    assert (await endpoint.post("/elsewhere", json=body, headers=HEADERS)).status_code == 404


async def test_a_local_ui_decodes_without_a_credential_on_loopback_only() -> None:
    settings = Settings(
        codec_keys=SecretStr(f"k1:{OLD}"), codec_token=SecretStr(TOKEN), codec_local_ui=True
    )
    transport = httpx.ASGITransport(app=create_codec_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8234") as http:
        [sealed] = await codec(f"k1:{OLD}").encode([plain("x")])
        answer = await http.post("/decode", json=as_json(sealed))
        assert answer.status_code == 200 and from_json(answer.json()) == [plain("x")]
        # a wrong token is still wrong: a credential given is checked
        wrong = await http.post(
            "/decode", json=as_json(sealed), headers={"Authorization": "Bearer nope-nope-nope"}
        )
        assert wrong.status_code == 401
        assert (await http.post("/encode", json=as_json(sealed))).status_code == 403
    for host in ("0.0.0.0", "10.1.2.3", "codec.partner.example.cn"):
        with pytest.raises(SettingsError, match="CODEC_HOST must be a loopback address"):
            create_codec_app(settings.model_copy(update={"codec_host": host}))


async def test_endpoint_reads_no_more_than_its_limit(
    endpoint: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunked body (no Content-Length) is cut off at the limit, not read whole first."""
    monkeypatch.setattr("api.codec.MAX_BODY_BYTES", 1024)
    read = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(10_000):
            read += 512
            yield b" " * 512

    answer = await endpoint.post("/decode", content=chunks(), headers=HEADERS)
    assert answer.status_code == 413
    assert read < 10_000 * 512
    lying = {**HEADERS, "Content-Length": "9" * 30}
    assert (await endpoint.post("/decode", content=b"{}", headers=lying)).status_code == 413


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
