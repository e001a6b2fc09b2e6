"""Typed settings from the environment (and `.env`), built once by worker.py and starter.py."""

from __future__ import annotations

import tomllib
from enum import StrEnum
from pathlib import Path

from pydantic import EmailStr, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.models import CasePolicy

ROOT = Path(__file__).resolve().parent.parent


class EmailBackend(StrEnum):
    OUTBOX = "outbox"
    SENDGRID = "sendgrid"


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = Field(default=f"sqlite:///{ROOT / 'var' / 'billing.db'}")
    task_queue: str = "billing-support"
    # Temporal address/namespace/TLS come from Temporal's env config (TEMPORAL_ADDRESS, ...).
    case_policy_file: Path = ROOT / "config" / "case_policy.toml"
    templates_dir: Path = ROOT / "templates"

    email_backend: EmailBackend = EmailBackend.OUTBOX
    email_from: EmailStr = "billing-support@partner.example.cn"
    email_from_name: str = "Billing Support"
    outbox_dir: Path = ROOT / "var" / "outbox"
    sendgrid_api_key: SecretStr | None = None
    # only for tests and the demo: where the SendGrid client sends its requests
    sendgrid_host: str = "https://api.sendgrid.com"

    # worker tuning (see README, "Performance")
    max_cached_workflows: int = Field(default=1000, ge=0)
    max_concurrent_activities: int = Field(default=50, ge=1)
    max_concurrent_workflow_tasks: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _secrets_present(self) -> Settings:
        if self.email_backend is EmailBackend.SENDGRID and not self.sendgrid_api_key:
            raise ValueError("SENDGRID_API_KEY is required when EMAIL_BACKEND=sendgrid")
        return self

    def case_policy(self) -> CasePolicy:
        return load_case_policy(self.case_policy_file)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def load_case_policy(path: Path) -> CasePolicy:
    """Read the case policy TOML; errors name the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"case policy file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: {exc}") from None
    try:
        return CasePolicy.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(f"{path}: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )
