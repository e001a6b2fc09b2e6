"""Payload encryption: every Temporal payload is sealed with AES-256-GCM before it leaves us.

The whole serialized payload (its JSON and its metadata) is encrypted; what Temporal stores is
``encoding: binary/encrypted``, the key id, the place it is sealed to (namespace and workflow id,
authenticated with it) and the ciphertext. A payload copied into another workflow's history does
not open there as sealed (core/sealing.py). Keys form a keyring: each key
decrypts, the last one encrypts. To rotate (docs/security.md), give every process
the new key first, then make it the last; drop an old one only once no open workflow holds payloads
sealed with it (an unknown key id is a clear error, never a guess).
Payloads that are not encrypted pass through decoding, so histories recorded before encryption
was enabled still read, and so do those sealed before payloads were bound to a place. The worker's
codec marks both (``mark_unsealed``): its workflows refuse what a client without the key sent, or
sent elsewhere (core/sealing.py, workflows/sealed.py).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from core.sealing import LEGACY, UNSEALED, SealState
from core.settings import Settings, SettingsError

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NAMESPACE = "sealed-namespace"  # the place a payload is sealed to, in clear beside the key id
WORKFLOW_ID = "sealed-workflow-id"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
TAG_BYTES = 16  # GCM's authentication tag
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CodecError(Exception):
    """A payload cannot be decrypted; the message names the key id and what to do."""


class Keyring:
    """Named AES-256 keys; the last one encrypts, every one decrypts. Its repr shows no key."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise SettingsError("no payload encryption key given")
        self._keys: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not KEY_ID_PATTERN.match(key_id):
                raise SettingsError(
                    f"key id {key_id[:70]!r} is not valid (letters, digits, '.', '_', '-')"
                )
            if key_id in self._keys:
                raise SettingsError(f"key id {key_id!r} is given twice")
            if len(key) != KEY_BYTES:
                raise SettingsError(f"key {key_id!r} is {len(key)} bytes, not {KEY_BYTES}")
            self._keys[key_id] = AESGCM(key)
        self.current = keys[-1][0]

    @property
    def ids(self) -> list[str]:
        return list(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(ids={self.ids!r}, current={self.current!r})"

    def cipher(self, key_id: str) -> AESGCM | None:
        return self._keys.get(key_id)

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        """``id:base64key`` items separated by commas or lines, the encrypting one last; '#' starts
        a comment.

        Errors name the source (CODEC_KEYS or the file) and the key id, never the key itself."""
        keys: list[tuple[str, bytes]] = []
        for line in text.splitlines():
            for item in line.split("#", 1)[0].split(","):
                if not item.strip():
                    continue
                key_id, sep, encoded = item.strip().partition(":")
                if not sep:
                    raise SettingsError(f"{source}: each key must be written id:base64key")
                try:
                    standard = encoded.strip().replace("-", "+").replace("_", "/")
                    key = base64.b64decode(standard, validate=True)
                except (binascii.Error, ValueError):
                    raise SettingsError(f"{source}: key {key_id!r} is not base64") from None
                keys.append((key_id.strip(), key))
        try:
            return cls(keys)
        except SettingsError as err:
            raise SettingsError(f"{source}: {err}") from None


def new_key() -> str:
    """A fresh AES-256 key, base64 (for CODEC_KEYS or a key file)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def load_keyring(settings: Settings) -> Keyring:
    """CODEC_KEYS if set, else CODEC_KEY_FILE; SettingsError (naming both) when neither has keys."""
    if settings.codec_keys is not None and settings.codec_keys.get_secret_value().strip():
        return Keyring.parse(settings.codec_keys.get_secret_value(), "CODEC_KEYS")
    path = settings.codec_key_file
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(
            f"no payload encryption key: set CODEC_KEYS or CODEC_KEY_FILE ({path} does not "
            "exist; `make run` creates it on first start)"
        ) from None
    except OSError as err:
        raise SettingsError(f"CODEC_KEY_FILE {path}: {err.strerror or err}") from None
    return Keyring.parse(text, f"CODEC_KEY_FILE {path}")


def write_key_file(path: Path, key_id: str = "local-1") -> None:
    """A key file readable by its owner only, with one fresh key (`make run`'s first start)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# payload encryption keys, id:base64key, newest last (see docs/security.md)\n")
        out.write(f"{key_id}:{new_key()}\n")


Place = tuple[str, str]  # (namespace, workflow id) a payload is sealed to


def place_of(context: SerializationContext) -> Place | None:
    """Where the SDK's serialization context says a payload is going to or coming from: its
    workflow's (an activity's payloads belong to the workflow that runs it)."""
    if isinstance(context, WorkflowSerializationContext):
        return (context.namespace, context.workflow_id)
    if isinstance(context, ActivitySerializationContext) and context.workflow_id:
        return (context.namespace, context.workflow_id)
    return None


def associated_data(key_id: str, place: Place | None) -> bytes:
    """What the tag authenticates besides the ciphertext: the key id and (from this release on)
    the place, each part length-prefixed so no two places share their bytes."""
    if place is None:  # sealed before payloads were bound to their place
        return key_id.encode()
    parts = [b"temporal-payload-v2", key_id.encode(), *(part.encode() for part in place)]
    return b"".join(len(part).to_bytes(4, "big") + part for part in parts)


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM per payload, a random 96-bit nonce each; the key id, the namespace and the
    workflow id (the SDK's serialization context) bound as associated data and named in the
    metadata, so the codec endpoint can open a payload without knowing where it lives.

    The worker's (`mark_unsealed`) never fails on what it gets: a payload that was not sealed, was
    sealed for another place, or does not open comes out marked (core/sealing.py), for its
    workflows to refuse as client input instead of failing the workflow task for ever."""

    def __init__(
        self, keyring: Keyring, *, mark_unsealed: bool = False, place: Place | None = None
    ) -> None:
        self.keyring = keyring
        self.mark_unsealed = mark_unsealed
        self.place = place

    def __repr__(self) -> str:
        return f"EncryptionCodec({self.keyring!r}, place={self.place!r})"

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        place = place_of(context)
        if place == self.place:
            return self
        return EncryptionCodec(self.keyring, mark_unsealed=self.mark_unsealed, place=place)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        key_id = self.keyring.current
        cipher = self.keyring.cipher(key_id)
        assert cipher is not None
        namespace, workflow_id = self.place or ("", "")
        aad = associated_data(key_id, (namespace, workflow_id))
        sealed = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            data = cipher.encrypt(nonce, payload.SerializeToString(), aad)
            metadata = {
                "encoding": ENCODING,
                KEY_ID: key_id.encode(),
                NAMESPACE: namespace.encode(),
                WORKFLOW_ID: workflow_id.encode(),
            }
            sealed.append(Payload(metadata=metadata, data=nonce + data))
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._open(payload) for payload in payloads]

    def _open(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return self._marked(payload, SealState.CLEAR) if self.mark_unsealed else payload
        try:
            opened, place = self._decrypt(payload)
        except CodecError:
            if not self.mark_unsealed:
                raise
            return self._marked(payload, SealState.BROKEN)
        if not self.mark_unsealed:
            return opened
        if place is None:
            opened.metadata[LEGACY] = b"1"
        elif self.place is not None and place != self.place:
            opened.metadata[UNSEALED] = SealState.FOREIGN.value.encode()
        return opened

    @staticmethod
    def _marked(payload: Payload, state: SealState) -> Payload:
        marked = Payload()
        marked.CopyFrom(payload)
        marked.metadata[UNSEALED] = state.value.encode()
        return marked

    def _decrypt(self, payload: Payload) -> tuple[Payload, Place | None]:
        metadata = payload.metadata
        key_id = metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        place: Place | None = None
        if WORKFLOW_ID in metadata:
            place = (
                metadata.get(NAMESPACE, b"").decode("utf-8", "replace"),
                metadata[WORKFLOW_ID].decode("utf-8", "replace"),
            )
        cipher = self.keyring.cipher(key_id)
        if cipher is None:
            known = ", ".join(self.keyring.ids)
            raise CodecError(
                f"payload encrypted with key id {key_id!r}, which is not configured (configured: "
                f"{known}): add that key to CODEC_KEYS or CODEC_KEY_FILE"
            )
        if len(payload.data) < NONCE_BYTES + TAG_BYTES:
            raise CodecError(
                f"payload with key id {key_id!r} is {len(payload.data)} bytes: too short to be "
                "one this codec sealed (a nonce and a tag alone are 28)"
            )
        nonce, data = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, data, associated_data(key_id, place))
        except InvalidTag:
            raise CodecError(
                f"payload with key id {key_id!r} does not authenticate: that id holds other key "
                "material than the one it was encrypted with, or the payload was altered"
            ) from None
        opened = Payload()
        try:
            opened.ParseFromString(plain)
        except DecodeError:
            raise CodecError(f"payload with key id {key_id!r} holds no payload") from None
        return opened, place
