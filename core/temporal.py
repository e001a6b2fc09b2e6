"""One way to reach Temporal: Temporal's env config (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TLS, API
key, or a profile file), localhost:7233 as the fallback, and the one data converter: pydantic
payloads encrypted by the payload codec, failure messages encrypted with them."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.envconfig import ClientConfig

from core.codec import EncryptionCodec, load_keyring
from core.settings import Settings, load_settings

DEFAULT_ADDRESS = "localhost:7233"


def data_converter(settings: Settings) -> DataConverter:
    """Raises SettingsError when no encryption key is configured: nothing goes out in clear."""
    return DataConverter(
        payload_converter_class=PydanticPayloadConverter,
        payload_codec=EncryptionCodec(load_keyring(settings)),
        # an error message can quote customer data: it travels encrypted like the payloads
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


async def connect(settings: Settings | None = None) -> Client:
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", DEFAULT_ADDRESS)
    converter = data_converter(settings or load_settings())
    return await Client.connect(**config, data_converter=converter)
