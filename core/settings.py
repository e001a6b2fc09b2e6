"""Typed settings from the environment (and `.env`), built once by worker.py and starter.py."""

from __future__ import annotations

import functools
import ipaddress
import re
import tomllib
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    EmailStr,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.alerts import Robot, parse_robots, public_base_url
from core.calendar import BusinessCalendar, china, opening_hours
from core.models import DEMO_LETTERHEAD, CasePolicy, CollectionsPolicy, Letterhead, Locale
from core.models.collections import ONE_DAY
from core.models.letters import Line
from core.models.statement import BankLayout, BankLayouts
from core.ratings import RatingLinks
from core.threads import EmailThreads

ROOT = Path(__file__).resolve().parent.parent
P = TypeVar("P", bound=BaseModel)
# a thread's token is a MAC anyone can compute for a guessed secret: long enough not to be guessed
THREAD_SECRET_LENGTH = 32
# the password in Inbound Parse's URL: all that keeps the internet from posting customers' mail
PARSE_SECRET_LENGTH = 16
# the longest build id Temporal takes (a longer one is never registered, silently)
BUILD_ID_CHARS = 255
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


class EmailBackend(StrEnum):
    OUTBOX = "outbox"
    SENDGRID = "sendgrid"
    SMTP = "smtp"
    GRAPH = "graph"  # Microsoft 365 operated by 21Vianet, through Microsoft Graph


SmtpSecurity = Literal["starttls", "tls", "none"]
WorkerQueues = Literal["all", "invoices", "cases"]
SmtpAuth = Literal["login", "xoauth2", "none"]


class InboundBackend(StrEnum):
    """Where `mail watch` reads customers' email from (Inbound Parse posts come in any case)."""

    FOLDER = "folder"  # the drop folder (INBOUND_DIR)
    IMAP = "imap"  # a shared mailbox over IMAP (IMAP_HOST, ...)
    GRAPH = "graph"  # Microsoft 365's shared mailbox through Microsoft Graph (M365_*)


class ImapSecurity(StrEnum):
    TLS = "tls"  # IMAPS, TLS from the first byte (port 993)
    STARTTLS = "starttls"  # plain IMAP upgraded to TLS before signing in (port 143)
    NONE = "none"  # no TLS at all: only to a server on this machine (tests)


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class SettingsError(ValueError):
    """A setting is missing or wrong; the message names it."""


def refund_thresholds(text: str) -> dict[str, Decimal]:
    """REFUND_APPROVAL_ABOVE as {currency or "*": amount}; a SettingsError names what is wrong."""
    found: dict[str, Decimal] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        currency, _, amount = item.rpartition("=")
        currency = currency.strip() or "*"
        if currency != "*" and not re.fullmatch(r"[A-Z]{3}", currency):
            raise SettingsError(f"REFUND_APPROVAL_ABOVE: {currency!r} is not a currency code")
        try:
            value = Decimal(amount.strip())
        except ArithmeticError:
            raise SettingsError(f"REFUND_APPROVAL_ABOVE: {amount!r} is not an amount") from None
        if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
            raise SettingsError(f"REFUND_APPROVAL_ABOVE: {amount!r} is not an amount")
        found[currency] = value.quantize(Decimal("0.01"))
    return found


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # out of repr: a PostgreSQL URL may carry its password
    database_url: str = Field(default=f"sqlite:///{ROOT / 'var' / 'billing.db'}", repr=False)
    task_queue: str = "billing-support"
    # Temporal address/namespace/TLS come from Temporal's env config (TEMPORAL_ADDRESS, ...).
    case_policy_file: Path = ROOT / "config" / "case_policy.toml"
    collections_policy_file: Path = ROOT / "config" / "collections_policy.toml"
    # finance's own mapping of a bank's statement columns, beside the built-in banks' layouts
    bank_layouts_file: Path = ROOT / "config" / "bank_layouts.toml"
    templates_dir: Path = ROOT / "templates"

    email_backend: EmailBackend = EmailBackend.OUTBOX
    email_from: EmailStr = "billing-support@partner.example.cn"
    email_from_name: str = "Billing Support"
    outbox_dir: Path = ROOT / "var" / "outbox"
    sendgrid_api_key: SecretStr | None = None
    # replies: each thread's Reply-To is billing-support+<token>@INBOUND_DOMAIN (the subdomain
    # whose MX points at SendGrid Inbound Parse), its token signed with EMAIL_THREAD_SECRET
    # ("old,new" while it is rotated: the last signs, each verifies; `make run` keeps one in var/)
    inbound_domain: str | None = None
    email_thread_secret: SecretStr | None = None
    # SendGrid's Event Webhook: its verification key (Mail Settings > Event Webhook > Signed
    # Event Webhook, the base64 key without PEM lines), events within this many seconds of now
    sendgrid_event_public_key: str | None = None
    sendgrid_event_window_seconds: int = Field(default=600, ge=30, le=86_400)
    # inbound attachments: a content-addressed store outside Temporal, each at most this size and
    # of these types (comma-separated in the environment); others are listed, not kept
    attachments_dir: Path = ROOT / "var" / "attachments"
    attachment_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    attachment_types: Annotated[list[str], NoDecode] = [
        "application/pdf",
        "image/jpeg",
        "image/png",
        "image/gif",
        "text/plain",
        "text/csv",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.ms-excel",
        "application/msword",
        "application/zip",
    ]
    # the drop folder `make run` watches: an .eml put there is received as a customer's email
    inbound_dir: Path = ROOT / "var" / "inbound"
    # Inbound Parse posts to https://sendgrid:<INBOUND_PARSE_SECRET>@<api host>/v1/inbound/sendgrid
    inbound_parse_secret: SecretStr | None = None
    # a reply in the reopen window that begins with one of these confirms the resolution; any
    # other reply reopens the case (comma-separated in the environment)
    inbound_confirm_words: Annotated[list[str], NoDecode] = [
        "确认",
        "確認",
        "同意",
        "confirm",
        "agree",
    ]
    # `mail watch` reads the drop folder, or a shared mailbox over IMAP (docs/settings.md):
    # each message is moved to IMAP_PROCESSED_FOLDER once taken, or to IMAP_FAILED_FOLDER
    inbound_backend: InboundBackend = InboundBackend.FOLDER
    imap_host: str | None = None
    imap_port: int | None = Field(default=None, ge=1, le=65535)  # 993 with tls, else 143
    imap_security: ImapSecurity = ImapSecurity.TLS
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    # login (IMAP_PASSWORD) or xoauth2 (the M365_* app's token for M365_MAIL_SCOPE)
    imap_auth: Literal["login", "xoauth2"] = "login"
    imap_folder: str = "INBOX"
    imap_processed_folder: str = "Processed"
    imap_failed_folder: str = "Failed"
    # a look at the mailbox at least this often; IDLE wakes it at once where the server offers it
    imap_poll_seconds: float = Field(default=1.0, gt=0, le=1500)
    # INBOUND_BACKEND=graph: how often the inbox's delta is asked for (Graph allows 10,000
    # requests in 10 minutes a mailbox: docs/microsoft-365.md)
    graph_poll_seconds: float = Field(default=2.0, gt=0, le=1500)
    # only for tests and the demo: where the SendGrid client sends its requests
    sendgrid_host: str = "https://api.sendgrid.com"
    # EMAIL_BACKEND=smtp: the partner's mail server (docs/settings.md); the port defaults by
    # security (starttls 587, tls 465, none 25: none only for a relay on this host or tests)
    smtp_host: str | None = None
    smtp_port: int | None = Field(default=None, ge=1, le=65535)
    smtp_security: SmtpSecurity = "starttls"
    smtp_auth: SmtpAuth = "login"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_envelope_from: EmailStr | None = None  # the envelope's sender; EMAIL_FROM when unset
    # the whole conversation's bound; with the rate limit's wait (at most 20 s) an attempt
    # stays within the activity's 60 s
    smtp_timeout_seconds: float = Field(default=30.0, gt=0, le=30)
    smtp_max_per_minute: int = Field(default=0, ge=0)  # per worker process; 0: no limit
    # SMTP_AUTH=xoauth2 and IMAP_AUTH=xoauth2 (Microsoft 365 operated by 21Vianet): the M365_*
    # app's token for this scope, the user SMTP_USERNAME / IMAP_USERNAME or the shared mailbox
    # (docs/microsoft-365.md: unverified)
    m365_mail_scope: str = "https://partner.outlook.cn/.default"

    # Microsoft 365 operated by 21Vianet through Microsoft Graph (EMAIL_BACKEND=graph; reading
    # the shared mailbox with intake/graph.py): the partner's app signs in app-only (client
    # credentials) at M365_AUTHORITY; M365_MAILBOX is the shared mailbox it sends as and reads
    # (default EMAIL_FROM). docs/microsoft-365.md has the permissions it needs.
    m365_tenant_id: str | None = None
    m365_client_id: str | None = None
    m365_client_secret: SecretStr | None = None
    m365_authority: str = "https://login.chinacloudapi.cn"
    m365_mailbox: EmailStr | None = None
    graph_url: str = "https://microsoftgraph.chinacloudapi.cn"
    graph_scope: str = "https://microsoftgraph.chinacloudapi.cn/.default"
    # where the mailbox reader keeps Graph's delta link, so a restart resumes from it (lost, the
    # inbox is read whole again: what was processed has left it, so nothing acts twice)
    graph_delta_file: Path = ROOT / "var" / "graph-delta.json"

    # Partner Center operated by 21Vianet: dry-run records each change and calls nothing
    partner_center_backend: Literal["dry-run", "partner-center"] = "dry-run"
    partner_center_url: str = "https://partner.partnercenterapi.microsoftonline.cn"
    partner_center_authority: str = "https://login.chinacloudapi.cn"
    # the partner's own Azure AD tenant and app (app-only auth), not a customer's
    partner_center_tenant_id: str | None = None
    partner_center_client_id: str | None = None
    partner_center_client_secret: SecretStr | None = None
    partner_center_scope: str = "https://api.partnercenter.microsoft.com/.default"

    # the HTTP intake (`python -m api`): each caller signs with its own secret, "old,new" while
    # one is rotated; the API refuses to start without both
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    # where customers reach it, e.g. https://billing-api.partner.cn: the closing letter links to
    # its /r/ rating pages (signed with EMAIL_THREAD_SECRET); unset: the letter asks for a reply
    # only. `make run` sets http://API_HOST:API_PORT
    api_public_url: str | None = None
    billing_webhook_secrets: SecretStr | None = None  # the billing system: failures, payments
    portal_webhook_secrets: SecretStr | None = None  # the customer portal: cases

    # China's working calendar (docs/working-hours.md): opening hours in
    # BUSINESS_TIMEZONE, working days with the official holidays and 调休 from chinesecalendar
    # for this year and the next. Each new case and collections workflow takes it along; false:
    # every clock runs around the clock (the tests' default: they run at any hour)
    business_calendar: bool = True
    business_timezone: str = "Asia/Shanghai"
    business_hours: str = "09:00-18:00"
    # the agents' workspace (`python -m web`): sessions signed with WEB_SESSION_SECRET (the
    # workspace refuses to start without it; `make run` keeps a local one under var/)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8010, ge=1, le=65535)
    web_session_secret: SecretStr | None = None
    web_session_idle_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60)
    web_session_max_hours: int = Field(default=12, ge=1, le=30 * 24)  # however busy the session
    # the session cookie is sent over HTTPS only, and browsers are told to keep to HTTPS (HSTS);
    # false only for plain http on loopback (`make run`)
    web_secure_cookies: bool = True
    temporal_ui_url: str = "http://localhost:8233"  # each case links to its workflow there
    # the workspace's address as staff open it (staff alerts link there); unset: WEB_HOST:WEB_PORT
    web_public_url: str | None = None
    # sign-in with the partner's Microsoft Entra ID operated by 21Vianet (off while unset); the
    # roles come from the `groups` claim: the object ids of each role's groups, comma-separated
    oidc_authority: str | None = None  # e.g. https://login.partner.microsoftonline.cn/<tenant>/v2.0
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_agent_groups: Annotated[list[str], NoDecode] = []
    oidc_manager_groups: Annotated[list[str], NoDecode] = []
    oidc_finance_groups: Annotated[list[str], NoDecode] = []
    oidc_admin_groups: Annotated[list[str], NoDecode] = []

    # the partner's payable to 21Vianet: who pays its invoices, reminded this many days before due
    # the partner in its customers' letters: the signature, and the account they transfer to
    partner_name: Line = DEMO_LETTERHEAD.partner_name
    partner_name_en: Line = DEMO_LETTERHEAD.partner_name_en
    partner_phone: Line = DEMO_LETTERHEAD.phone
    partner_hours: Line = DEMO_LETTERHEAD.hours
    bank_account_name: Line = DEMO_LETTERHEAD.bank_account_name
    bank_name: Line = DEMO_LETTERHEAD.bank_name
    bank_account_number: Line = DEMO_LETTERHEAD.bank_account_number

    # staff alerts (docs/staff-alerts.md): the group robots that also get the alerting staff emails,
    # `wecom:<url>,dingtalk:<url>#<secret>,feishu:<url>#<secret>`; unset: email only
    staff_alerts: SecretStr | None = None
    staff_alerts_locale: Locale = Locale.ZH_CN  # the staff's language in the robots' groups

    finance_email: EmailStr = "finance@partner.example.cn"
    finance_locale: Locale = Locale.ZH_CN
    vianet_invoice_reminder_days: int = Field(default=3, ge=1, le=60)
    # a refund of a customer's credit above this needs a manager's approval (docs/finance.md):
    # one amount for every currency ("5000.00"), or per currency ("CNY=5000.00,USD=700.00"; a
    # currency not named needs approval for any amount)
    refund_approval_above: str = "5000.00"

    @field_validator("refund_approval_above")
    @classmethod
    def _thresholds(cls, value: str) -> str:
        try:
            refund_thresholds(value)
        except SettingsError as err:
            raise ValueError(str(err)) from None
        return value

    def refund_approval(self, currency: str) -> Decimal:
        """The amount above which a refund in `currency` waits for a manager."""
        thresholds = refund_thresholds(self.refund_approval_above)
        return thresholds.get(currency, thresholds.get("*", Decimal("0.00")))

    # payload encryption: "id:base64key" items (comma- or line-separated); the last encrypts, all
    # decrypt. CODEC_KEYS wins over the file; `make run` creates var/codec.keys.
    codec_keys: SecretStr | None = None
    codec_key_file: Path = ROOT / "var" / "codec.keys"
    # the codec endpoint the Temporal UI decodes through (`python -m api.codec`)
    codec_host: str = "127.0.0.1"
    codec_port: int = Field(default=8234, ge=1, le=65535)
    # operators' tools decode with it (`Authorization: Bearer`, never in a URL)
    codec_token: SecretStr | None = None
    # a Temporal UI with no sign-in of its own (`make run`) decodes without a credential: only on
    # a loopback host (anyone on this machine then reads what the UI shows)
    codec_local_ui: bool = False
    codec_cors_origins: Annotated[list[str], NoDecode] = [
        "http://localhost:8233",
        "http://127.0.0.1:8233",
    ]

    # operating it (docs/operating.md): the worker's /metrics, /healthz and /ready on
    # WORKER_METRICS_PORT, the Temporal SDK's own metrics on TEMPORAL_METRICS_PORT (both off when
    # unset; `make run` sets them); the API serves its own on API_PORT
    metrics_host: str = "127.0.0.1"
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    temporal_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # how often the worker counts the workflows needing attention (a visibility query)
    attention_interval_seconds: float = Field(default=60.0, gt=0)
    # "json": one JSON object a line with workflow and activity ids, never customer data
    log_format: Literal["text", "json"] = "text"
    # OpenTelemetry traces over OTLP/HTTP (e.g. http://collector:4318): off when unset
    otel_exporter_otlp_endpoint: str | None = None

    # which task queues this worker process polls (WORKER_QUEUES): both, or one, to run the
    # cases' workers apart from a billing run's (docs/production.md, "People first")
    worker_queues: WorkerQueues = "all"
    # worker tuning, chosen with `make bench` (docs/performance.md).
    # A cached workflow holds ~0.28 MiB (~0.46 in the sandbox): 1000 keep the worker near 0.4 GiB
    # with 10,000 open; an evicted one replays on its next update (21 ms for 45 events, 37 in the
    # sandbox). More cache also lengthens each full garbage collection, a latency spike.
    max_cached_workflows: int = Field(default=1000, ge=0)
    # threads of the synchronous activities (database, templates, outbox): 20 and 50 measured
    # alike; 8 lost 15-19 % of the cases per second and cost the dev server more CPU per case
    max_concurrent_activities: int = Field(default=50, ge=1)
    # activations run one at a time under the GIL anyway: 20 and 50 measured alike
    max_concurrent_workflow_tasks: int = Field(default=50, ge=1)
    # Temporal's Python sandbox: it fails a workflow that reads the clock, draws randomness or
    # does I/O, and it re-imports the workflow module for every workflow it runs. Off (the default)
    # measured 30-50 ms less worker CPU per bench case, 28 % less worker memory with 10,000 open
    # and faster updates on evicted ones (docs/performance.md). The tests keep it on
    # (tests/conftest.py): there it catches a workflow that would not replay.
    workflow_sandbox: bool = False

    # Worker Versioning (docs/production.md): the worker polls as version
    # WORKER_DEPLOYMENT_NAME:WORKER_BUILD_ID; cases, collections and 21Vianet invoices stay on the
    # build they started on, accounts move to the current one. The build id defaults to a digest
    # of the code a workflow's commands depend on (core/deployment.py), so a release that changes
    # a workflow is a new build and one that does not is the same build.
    worker_versioning: bool = True
    worker_deployment_name: str = "billing-support"
    worker_build_id: str | None = None
    # the local stack only (`make run`): on start the worker makes its version current and takes
    # over the older builds' open pinned workflows whose histories replay on its code; in
    # production the deploy sets the current version (`temporal worker deployment ...`)
    worker_take_over: bool = False

    @field_validator(
        "codec_cors_origins",
        "inbound_confirm_words",
        "attachment_types",
        "oidc_agent_groups",
        "oidc_manager_groups",
        "oidc_finance_groups",
        "oidc_admin_groups",
        mode="before",
    )
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # CODEC_CORS_ORIGINS and INBOUND_CONFIRM_WORDS are written like CODEC_KEYS: comma-separated
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("codec_cors_origins")
    @classmethod
    def _named_origins(cls, value: list[str]) -> list[str]:
        # the codec endpoint answers with decrypted customer data to pages that send its token:
        # only the UI's own origins, never any page at all
        if any("*" in origin for origin in value):
            raise ValueError("must name the Temporal UI's origins, not '*'")
        bad = [o for o in value if not o.startswith(("http://", "https://")) or o.count("/") != 2]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an origin such as https://temporal.example.cn")
        return value

    @field_validator("worker_deployment_name", "worker_build_id")
    @classmethod
    def _version_part(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not 1 <= len(value) <= BUILD_ID_CHARS:
            raise ValueError(f"must be 1 to {BUILD_ID_CHARS} characters")
        if any(not ch.isascii() or not ch.isprintable() or ch.isspace() for ch in value):
            raise ValueError(f"{value!r}: printable ASCII without spaces only")
        return value

    @field_validator("worker_deployment_name")
    @classmethod
    def _deployment_name(cls, value: str) -> str:
        # Temporal spells a version `<deployment>.<build id>` (older servers `:`): neither in a name
        if "." in value or ":" in value:
            raise ValueError(f"{value!r}: no '.' or ':' (Temporal separates a version's parts so)")
        return value

    @field_validator("smtp_host")
    @classmethod
    def _smtp_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        try:
            ipaddress.ip_address(value)
            return value
        except ValueError:
            pass
        if not _HOST_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a host name such as smtp.exmail.qq.com (no scheme, no port: "
                "the port is SMTP_PORT)"
            )
        return value

    @field_validator("m365_authority", "graph_url")
    @classmethod
    def _service_url(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        if scheme not in ("https", "http") or not rest.strip("/"):
            raise ValueError(f"{value!r} is not a URL such as https://login.chinacloudapi.cn")
        return value.rstrip("/")

    @field_validator("business_hours")
    @classmethod
    def _opening_hours(cls, value: str) -> str:
        opening_hours(value)
        return value

    @field_validator("business_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not a time zone such as Asia/Shanghai") from None
        return value

    @model_validator(mode="after")
    def _secrets_present(self) -> Settings:
        if self.email_backend is EmailBackend.SENDGRID and not self.sendgrid_api_key:
            raise ValueError("SENDGRID_API_KEY is required when EMAIL_BACKEND=sendgrid")
        if self.inbound_parse_secret is not None:
            why = "SendGrid Inbound Parse posts with it in its URL"
            required_secret(
                self.inbound_parse_secret,
                "INBOUND_PARSE_SECRET",
                why,
                PARSE_SECRET_LENGTH,
                generated=False,
            )
        if self.email_thread_secret is not None:
            self.inbound_threads()
        elif self.inbound_domain or self.inbound_parse_secret is not None:
            # an unsigned token would let anyone write into any thread
            raise ValueError(
                "EMAIL_THREAD_SECRET is required when INBOUND_DOMAIN or INBOUND_PARSE_SECRET is set"
            )
        return self

    @field_validator("staff_alerts")
    @classmethod
    def _robots(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_robots(value.get_secret_value())
        return value

    @field_validator("web_public_url", "api_public_url")
    @classmethod
    def _public_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        return public_base_url(value, str(info.field_name).upper())

    @model_validator(mode="after")
    def _smtp_complete(self) -> Settings:
        if self.email_backend is not EmailBackend.SMTP:
            return self
        if not (self.smtp_host or "").strip():
            raise ValueError("SMTP_HOST is required when EMAIL_BACKEND=smtp")
        if self.smtp_auth == "xoauth2":
            self.require_m365("SMTP_AUTH=xoauth2")
        if self.smtp_auth == "login":
            if not (self.smtp_username or "").strip():
                raise ValueError("SMTP_USERNAME is required when SMTP_AUTH=login")
            if self.smtp_password is None or not self.smtp_password.get_secret_value():
                raise ValueError("SMTP_PASSWORD is required when SMTP_AUTH=login")
        if self.smtp_auth != "none" and self.smtp_security == "none":
            raise ValueError(
                f"SMTP_AUTH={self.smtp_auth} needs SMTP_SECURITY starttls or tls: the "
                f"{'password' if self.smtp_auth == 'login' else 'token'} would go in clear"
            )
        return self

    @model_validator(mode="after")
    def _imap_complete(self) -> Settings:
        if self.inbound_backend is not InboundBackend.IMAP:
            return self
        needed: tuple[str, ...] = ("imap_host", "imap_username", "imap_password")
        if self.imap_auth == "xoauth2":  # the user defaults to the shared mailbox
            self.require_m365("IMAP_AUTH=xoauth2")
            needed = ("imap_host",)
        for name in needed:
            if not getattr(self, name):
                raise ValueError(f"{name.upper()} is required when INBOUND_BACKEND=imap")
        if self.imap_security is ImapSecurity.NONE and self.imap_host not in LOOPBACK_HOSTS:
            # the password and every customer's email would cross the network in clear
            raise ValueError("IMAP_SECURITY=none only with a server on this machine (IMAP_HOST)")
        folders = {
            "IMAP_FOLDER": self.imap_folder,
            "IMAP_PROCESSED_FOLDER": self.imap_processed_folder,
            "IMAP_FAILED_FOLDER": self.imap_failed_folder,
        }
        for name, folder in folders.items():
            if not folder.strip() or any(not ch.isprintable() for ch in folder):
                raise ValueError(f"{name}: {folder!r} is not a folder name")
        seen: dict[str, str] = {}
        for name, folder in folders.items():
            # INBOX is the one name IMAP compares without case
            key = folder.upper() if folder.upper() == "INBOX" else folder
            if key in seen:
                raise ValueError(f"{name} and {seen[key]} must differ (both {folder!r})")
            seen[key] = name
        return self

    @model_validator(mode="after")
    def _take_over_versioned(self) -> Settings:
        if self.worker_take_over and not self.worker_versioning:
            raise ValueError("WORKER_TAKE_OVER needs WORKER_VERSIONING=true")
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.oidc_authority and not (self.oidc_client_id and self.oidc_client_secret):
            raise ValueError(
                "OIDC_CLIENT_ID and OIDC_CLIENT_SECRET are required with OIDC_AUTHORITY"
            )
        return self

    @model_validator(mode="after")
    def _m365_credentials(self) -> Settings:
        if self.email_backend is EmailBackend.GRAPH:
            self.require_m365("EMAIL_BACKEND=graph")
        if self.inbound_backend is InboundBackend.GRAPH:
            self.require_m365("INBOUND_BACKEND=graph")
        return self

    def require_m365(self, why: str) -> None:
        """SettingsError naming each M365_* setting that Graph needs and is not set."""
        missing = [
            name.upper()
            for name in ("m365_tenant_id", "m365_client_id", "m365_client_secret")
            if not getattr(self, name)
        ]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise SettingsError(f"{', '.join(missing)} {verb} required when {why}")

    def shared_mailbox(self) -> str:
        """The Microsoft 365 mailbox Graph sends as and reads: M365_MAILBOX, else EMAIL_FROM."""
        return str(self.m365_mailbox or self.email_from)

    @model_validator(mode="after")
    def _partner_center_credentials(self) -> Settings:
        if self.partner_center_backend == "partner-center":
            missing = [
                name.upper()
                for name in (
                    "partner_center_tenant_id",
                    "partner_center_client_id",
                    "partner_center_client_secret",
                )
                if not getattr(self, name)
            ]
            if missing:
                names = ", ".join(missing)
                verb = "is" if len(missing) == 1 else "are"
                raise ValueError(
                    f"{names} {verb} required when PARTNER_CENTER_BACKEND=partner-center"
                )
        return self

    def email_threads(self) -> EmailThreads:
        """How emails are threaded: tokens made with the last EMAIL_THREAD_SECRET, replies
        verified against each (none set: emails still thread, and no reply routes)."""
        return EmailThreads(tuple(split_secrets(self.email_thread_secret)), self.inbound_domain)

    def inbound_threads(self) -> EmailThreads:
        """The threads inbound mail acts on; SettingsError without a thread secret, or with one
        too short to stay unguessed."""
        why = "a reply acts on a thread only when its token is signed with it"
        required_secrets(self.email_thread_secret, "EMAIL_THREAD_SECRET", why, THREAD_SECRET_LENGTH)
        return self.email_threads()

    def robots(self) -> list[Robot]:
        """The group robots STAFF_ALERTS names (checked when the settings load)."""
        if self.staff_alerts is None:
            return []
        return parse_robots(self.staff_alerts.get_secret_value())

    @property
    def cases_task_queue(self) -> str:
        """Cases, people's work, on a task queue of their own (TASK_QUEUE + "-cases"), polled
        by a worker with its own cache and slots: a billing run's thousands of invoices and
        accounts neither queue ahead of an agent's update nor push the cases out of the cache
        (docs/performance.md, scenario 8)."""
        return f"{self.task_queue}-cases"

    def task_queues(self) -> tuple[str, str]:
        """The pipeline's task queues: the invoices', accounts' and 21Vianet invoices', and the
        cases'."""
        return (self.task_queue, self.cases_task_queue)

    def polled_task_queues(self) -> tuple[str, ...]:
        """The task queues this worker process polls (WORKER_QUEUES)."""
        return {
            "all": self.task_queues(),
            "invoices": (self.task_queue,),
            "cases": (self.cases_task_queue,),
        }[self.worker_queues]

    def workspace_url(self) -> str:
        """Where staff open the workspace: WEB_PUBLIC_URL, or the address it listens on."""
        return self.web_public_url or f"http://{self.web_host}:{self.web_port}"

    def rating_links(self) -> RatingLinks | None:
        """The closing letter's rating links: None without API_PUBLIC_URL or a thread secret."""
        secrets = tuple(split_secrets(self.email_thread_secret))
        if self.api_public_url is None or not secrets:
            return None
        return RatingLinks(self.api_public_url, secrets)

    def letterhead(self) -> Letterhead:
        return Letterhead(
            partner_name=self.partner_name,
            partner_name_en=self.partner_name_en,
            phone=self.partner_phone,
            hours=self.partner_hours,
            bank_account_name=self.bank_account_name,
            bank_name=self.bank_name,
            bank_account_number=self.bank_account_number,
        )

    def case_policy(self) -> CasePolicy:
        """The policy file's rules, whether a resolution waits for its delivery (SendGrid
        reports it later; the outbox's written file is delivered), and the business calendar."""
        policy = load_case_policy(self.case_policy_file)
        delivered_later = self.email_backend is EmailBackend.SENDGRID
        return policy.model_copy(
            update={
                "told_when_delivered": delivered_later,
                "calendar": self.calendar(),
                "task_queue": self.cases_task_queue,
            }
        )

    def collections_policy(self) -> CollectionsPolicy:
        policy = load_collections_policy(self.collections_policy_file)
        calendar = self.calendar()
        if calendar is not None and policy.day_length != ONE_DAY:
            # a working day is a date on China's calendar: it cannot last a minute
            raise SettingsError(
                f"{self.collections_policy_file}: day_length shorter than a day needs "
                "BUSINESS_CALENDAR=false (`make demo` sets it)"
            )
        return policy.model_copy(update={"calendar": calendar})

    def bank_layouts(self) -> list[BankLayout]:
        """The statement layouts finance mapped (docs/bank-statements.md); none without a file."""
        if not self.bank_layouts_file.exists():
            return []
        return _load_toml(self.bank_layouts_file, BankLayouts).layout

    def calendar(self, today: date | None = None) -> BusinessCalendar | None:
        """The working calendar of this year (`today`'s, in the business zone) and the next;
        None when BUSINESS_CALENDAR is off."""
        if not self.business_calendar:
            return None
        opens, closes = opening_hours(self.business_hours)
        today = today or datetime.now(ZoneInfo(self.business_timezone)).date()
        try:
            return china(today, zone=self.business_timezone, opens=opens, closes=closes)
        except ValueError as err:
            raise SettingsError(f"BUSINESS_TIMEZONE: {err}") from None


def required_secret(
    secret: SecretStr | None, name: str, why: str, min_length: int, *, generated: bool = True
) -> SecretStr:
    """A secret a process will not start without; SettingsError names it and says why.
    `generated`: `make run` makes a local one."""
    if secret is None or not secret.get_secret_value().strip():
        local = "; `make run` generates a local one under var/" if generated else ""
        raise SettingsError(f"{name} is not set: {why} (set it in the environment or .env{local})")
    if len(secret.get_secret_value()) < min_length:
        raise SettingsError(f"{name} must be at least {min_length} characters")
    return secret


def split_secrets(value: SecretStr | None) -> list[SecretStr]:
    """`old,new` (or one): the secrets of a setting that is rotated, oldest first."""
    if value is None:
        return []
    return [SecretStr(part.strip()) for part in value.get_secret_value().split(",") if part.strip()]


def required_secrets(
    value: SecretStr | None, name: str, why: str, min_length: int, most: int | None = None
) -> list[SecretStr]:
    """`required_secret` for a setting of `old,new` secrets: each at least `min_length`."""
    secrets = split_secrets(required_secret(value, name, why, 1))
    if most is not None and len(secrets) > most:
        raise SettingsError(f"{name}: at most {most} secrets (the old and the new)")
    for secret in secrets:
        required_secret(secret, name, why, min_length)
    return secrets


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def load_case_policy(path: Path) -> CasePolicy:
    """Read the case policy TOML; errors name the file and the key."""
    return _load_toml(path, CasePolicy)


def load_collections_policy(path: Path) -> CollectionsPolicy:
    """Read the collections policy TOML; errors name the file, the line and the key."""
    return _load_toml(path, CollectionsPolicy)


def _load_toml(path: Path, model: type[P]) -> P:
    try:
        version = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise SettingsError(f"policy file not found: {path}") from None
    return cast(P, _parse_toml(path, version, model))


@functools.lru_cache(maxsize=32)
def _parse_toml(path: Path, version: int, model: type[P]) -> P:
    """Parsed once per file version: a bulk import reports thousands of failures per second."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"policy file not found: {path}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message carries the line and column
        raise SettingsError(f"{path}: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]["loc"]
        line = _line_of(text, first)
        where = f"{path}:{line}" if line else str(path)
        raise SettingsError(f"{where}: {_describe(exc)}") from None


def _line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    """The line of the key an error points at: `[[steps]]` number n, then the key inside it."""
    lines = text.splitlines()
    start, parts = 0, list(loc)
    if len(parts) >= 2 and isinstance(parts[1], int):
        headers = [i for i, ln in enumerate(lines) if ln.strip() == f"[[{parts[0]}]]"]
        if parts[1] >= len(headers):
            return None
        start, parts = headers[parts[1]], parts[2:]
        end = next((i for i in headers if i > start), len(lines))
    else:
        end = len(lines)
    key = next((p for p in parts if isinstance(p, str)), None)
    for i in range(start, end):
        if key and lines[i].split("=")[0].strip() == key:
            return i + 1
    return start + 1 if start else None


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )
