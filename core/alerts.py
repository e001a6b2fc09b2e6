"""Staff alerts: which staff emails also go to the partner's group robots (WeCom, DingTalk,
Feishu), and the robots as STAFF_ALERTS names them (docs/staff-alerts.md has each service's
format, signature and rate limit, with sources).

STAFF_ALERTS is a comma-separated list of ``<service>:<webhook URL>[#<signing secret>]``: the
secret rides in the URL's fragment, which is never sent anywhere (DingTalk's ``SEC…`` secret and
Feishu's signature secret; WeCom's group robots have none). A robot is named in the outbox by its
service and a digest of its URL, so reordering the list keeps what was queued for each.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import parse_qs, quote, urlsplit

from pydantic import SecretStr

from core.models import About

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class RobotService(StrEnum):
    WECOM = "wecom"  # 企业微信 group robot
    DINGTALK = "dingtalk"  # 钉钉 custom robot
    FEISHU = "feishu"  # 飞书 custom bot


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` messages in any ``seconds`` (each robot's own budget)."""

    count: int
    seconds: float


# docs/staff-alerts.md: WeCom and DingTalk 20 a minute per robot; Feishu 100 a minute and 5 a second
RATE_LIMITS: dict[RobotService, tuple[RateLimit, ...]] = {
    RobotService.WECOM: (RateLimit(20, 60.0),),
    RobotService.DINGTALK: (RateLimit(20, 60.0),),
    RobotService.FEISHU: (RateLimit(100, 60.0), RateLimit(5, 1.0)),
}


@dataclass(frozen=True)
class Robot:
    service: RobotService
    url: str = field(repr=False)  # its key or token is the credential
    secret: SecretStr | None = None

    @property
    def name(self) -> str:
        """Stable across restarts and reorderings; reveals nothing of the key."""
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        return f"{self.service.value}-{digest}"

    @property
    def limits(self) -> tuple[RateLimit, ...]:
        return RATE_LIMITS[self.service]


class AlertKind(StrEnum):
    """What a staff alert is about; each has a template under ``templates/alert/<locale>/``."""

    NEEDS_ATTENTION = "needs_attention"
    APPROVAL_ASKED = "approval_asked"  # a suspension waits for a manager
    SLA_BREACH = "sla_breach"
    FINAL_NOTICE_BOUNCED = "final_notice_bounced"
    EMAIL_BOUNCED = "email_bounced"  # a case's email to the customer bounced


# each robot's webhook as its service documents it: the host, and what identifies the robot
_SHAPES: dict[RobotService, tuple[str, str]] = {
    RobotService.WECOM: ("qyapi.weixin.qq.com", "key"),
    RobotService.DINGTALK: ("oapi.dingtalk.com", "access_token"),
    RobotService.FEISHU: ("open.feishu.cn", "/open-apis/bot/v2/hook/"),
}


def parse_robots(value: str, setting: str = "STAFF_ALERTS") -> list[Robot]:
    """The robots of a STAFF_ALERTS value; ValueError naming the setting and the item (never
    its key or secret) when one is wrong."""
    robots: list[Robot] = []
    for number, item in enumerate((part.strip() for part in value.split(",")), start=1):
        if not item:
            continue
        robot = _robot(item, f"{setting} item {number}")
        if any(known.url == robot.url for known in robots):
            raise ValueError(f"{setting} item {number}: the same robot is listed twice")
        robots.append(robot)
    return robots


def _robot(item: str, where: str) -> Robot:
    kind, colon, rest = item.partition(":")
    try:
        service = RobotService(kind.strip().lower())
    except ValueError:
        names = ", ".join(s.value for s in RobotService)
        raise ValueError(f"{where}: begins with one of {names} and a colon") from None
    if not colon or not rest:
        raise ValueError(f"{where}: write {service.value}:<webhook URL>")
    url, hashed, secret = rest.partition("#")
    where = f"{where} ({service.value})"
    _check_url(url, service, where)
    if service is RobotService.WECOM and hashed:
        raise ValueError(f"{where}: a WeCom group robot has no signing secret (nothing after '#')")
    if hashed and not secret.strip():
        raise ValueError(f"{where}: the signing secret after '#' is empty")
    return Robot(service, url, SecretStr(secret.strip()) if hashed else None)


def _check_url(url: str, service: RobotService, where: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise ValueError(f"{where}: not a URL") from None
    if parts.scheme == "http" and host in LOOPBACK:
        pass  # a stand-in on this machine (tests, the demo)
    elif parts.scheme != "https" or not host:
        raise ValueError(f"{where}: the webhook must be an https:// URL")
    expected_host, identifies = _SHAPES[service]
    if host not in LOOPBACK and host != expected_host:
        raise ValueError(f"{where}: a {service.value} webhook is on {expected_host}")
    if identifies.startswith("/"):
        robot_id = parts.path.removeprefix(identifies) if parts.path.startswith(identifies) else ""
        if not robot_id.strip("/"):
            raise ValueError(f"{where}: the URL's path is {identifies}<robot id>")
    elif not parse_qs(parts.query).get(identifies):
        raise ValueError(f"{where}: the URL needs its {identifies} parameter")


def public_base_url(value: str, setting: str = "WEB_PUBLIC_URL") -> str:
    """An address people open (the workspace's in alerts, the API's in letters): http(s), no
    query."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(
            f"{setting}: write the address as people open it, e.g. https://billing.partner.cn"
        )
    return value.strip().rstrip("/")


def workspace_page(about: About, key: str) -> str:
    """The workspace page where a person acts on what a workflow waits for (a staff email's and
    an alert's link, the 需要处理 queue's): a case, an invoice in collections, a customer's
    account (its customer's page), a 21Vianet invoice (the payables)."""
    match about:
        case About.CASE:
            return f"/cases/{quote(key, safe='')}"
        case About.COLLECTIONS:
            return f"/collections/{quote(key, safe='')}"
        case About.ACCOUNT:
            return f"/customers/{quote(key, safe='')}#attention"
    return "/payables"
