"""Post one alert to a group robot, as each service documents it (docs/staff-alerts.md):

- WeCom (企业微信) group robot: ``{"msgtype": "markdown", "markdown": {"content": …}}`` to the
  webhook; answers ``{"errcode": 0}``, 45009 when the robot sent too many.
- DingTalk (钉钉) custom robot: ``{"msgtype": "markdown", "markdown": {"title", "text"}}``; with a
  signing secret, ``timestamp`` (ms) and ``sign`` = urlencode(base64(HMAC-SHA256(secret,
  f"{timestamp}\\n{secret}"))) in the query; answers errcode 0, 130101 when it sent too fast.
- Feishu (飞书) custom bot: ``{"msg_type": "interactive", "card": …}``; with a signing secret,
  ``timestamp`` (s) and ``sign`` = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))
  in the body; answers ``{"code": 0}``, 11232 (or HTTP 429) when limited.

Each answer becomes: nothing (posted), ``RobotRateLimited`` (kept, posted after ``retry_after``),
``RobotUnavailable`` (tried again with backoff) or ``RobotRefused`` (for good: a bad key, a
signature the robot does not take, a message it will never take).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import httpx

from core.alerts import Robot, RobotService

TIMEOUT_SECONDS = 10.0
# the services' own ceilings, with room to spare (WeCom's markdown content is 4096 bytes, Feishu's
# whole request 20 KB): an alert is a few lines, and one cut short still links to its page
TEXT_BYTES = 3500
# how long a robot that said "too many" is left alone, where it does not say
RATE_LIMIT_PAUSE = {
    RobotService.WECOM: 60.0,
    RobotService.DINGTALK: 600.0,  # DingTalk throttles a robot that sent too fast for 10 minutes
    RobotService.FEISHU: 60.0,
}
# the codes each service answers when the robot is over its rate limit, and when it is busy
_LIMITED: dict[RobotService, frozenset[int]] = {
    RobotService.WECOM: frozenset({45009}),
    RobotService.DINGTALK: frozenset({130101}),
    RobotService.FEISHU: frozenset({11232, 99991400}),
}
_BUSY: dict[RobotService, frozenset[int]] = {
    RobotService.WECOM: frozenset({-1}),
    RobotService.DINGTALK: frozenset({-1}),
    RobotService.FEISHU: frozenset(),
}


class RobotError(Exception):
    pass


class RobotRateLimited(RobotError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RobotUnavailable(RobotError):
    """Down, busy or unreachable: try again later."""


class RobotRefused(RobotError):
    """Refused for good: the same request never succeeds."""


def fit(text: str, limit: int = TEXT_BYTES) -> str:
    """At most ``limit`` bytes of UTF-8, cut at a character and marked."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return quote_plus(base64.b64encode(digest))


def feishu_sign(secret: str, timestamp_s: int) -> str:
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def request(robot: Robot, title: str, text: str, now: float) -> tuple[str, dict[str, Any]]:
    """The URL and JSON body of one alert to ``robot``, signed as of ``now`` (epoch seconds)."""
    text = fit(text)
    secret = robot.secret.get_secret_value() if robot.secret is not None else None
    match robot.service:
        case RobotService.WECOM:
            return robot.url, {
                "msgtype": "markdown",
                "markdown": {"content": f"**{title}**\n{text}"},
            }
        case RobotService.DINGTALK:
            url = robot.url
            if secret is not None:
                millis = int(now * 1000)
                url += f"&timestamp={millis}&sign={dingtalk_sign(secret, millis)}"
            # DingTalk's markdown joins single lines: a hard break ends each one
            body = "  \n".join(text.splitlines())
            markdown = {"title": title, "text": f"#### {title}\n\n{body}"}
            return url, {"msgtype": "markdown", "markdown": markdown}
        case RobotService.FEISHU:
            card = {
                "header": {"title": {"tag": "plain_text", "content": title}, "template": "orange"},
                "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": text}}],
            }
            payload: dict[str, Any] = {"msg_type": "interactive", "card": card}
            if secret is not None:
                seconds = int(now)
                payload = {
                    "timestamp": str(seconds),
                    "sign": feishu_sign(secret, seconds),
                    **payload,
                }
            return robot.url, payload


class RobotClient:
    """Posts alerts over one HTTP client (its connections reused); ``clock`` signs them."""

    def __init__(
        self, http: httpx.AsyncClient | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.http = http or httpx.AsyncClient(timeout=TIMEOUT_SECONDS)
        self.clock = clock

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(self, robot: Robot, title: str, text: str) -> None:
        url, body = request(robot, title, text, self.clock())
        try:
            answer = await self.http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise RobotUnavailable(f"{robot.service.value} robot unreachable: {exc!r}") from exc
        _judge(robot, answer)


def _judge(robot: Robot, answer: httpx.Response) -> None:
    service = robot.service
    try:
        said: Any = answer.json()
    except ValueError:
        said = None
    code = _code(service, said)
    what = f"{service.value} robot answered HTTP {answer.status_code}" + (
        f", code {code}: {_message(said)}" if code is not None else ""
    )
    reset = answer.headers.get("x-ogw-ratelimit-reset", "")
    pause = float(reset) if reset.isdigit() else RATE_LIMIT_PAUSE[service]
    if answer.status_code == 429 or code in _LIMITED[service]:
        raise RobotRateLimited(what, pause)
    if answer.status_code >= 500 or code in _BUSY[service]:
        raise RobotUnavailable(what)
    if answer.status_code == 200 and code == 0:
        return
    raise RobotRefused(what)


def _code(service: RobotService, said: Any) -> int | None:
    if not isinstance(said, dict):
        return None
    # Feishu answers `code` (older answers `StatusCode`); WeCom and DingTalk `errcode`
    names = ("code", "StatusCode") if service is RobotService.FEISHU else ("errcode",)
    for name in names:
        if isinstance(said.get(name), int):
            return int(said[name])
    return None


def _message(said: Any) -> str:
    text = str(said.get("errmsg") or said.get("msg") or "") if isinstance(said, dict) else ""
    return text[:300]
