"""Stand-ins for the three group robots on 127.0.0.1, each checking a post as its service does
(docs/staff-alerts.md): the documented message format, the robot's key or token, the signature
recomputed from the shared secret and the timestamp (within an hour of the stand-in's clock), and
its rate limit over the stand-in's clock (WeCom and DingTalk 20 a minute, Feishu 100 a minute and
5 a second). It answers with each service's own codes; ``limit(service)`` makes the next posts to
it answer "too many" whatever the count, ``fail(service)`` answers HTTP 500.

The signatures are computed here from the services' documents, not with the product's code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.background import Background

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DINGTALK_TOKEN = "ff6cd723bdb4455fe18ba30dbeff007f5"
DINGTALK_SECRET = "SEC0123456789abcdef"
FEISHU_HOOK = "2b47757342ff761b33b92272125e5090"
FEISHU_SECRET = "feishu-signing-secret"
SERVICE_OF = {"cgi-bin": "wecom", "robot": "dingtalk", "open-apis": "feishu"}
LIMITS = {"wecom": ((20, 60),), "dingtalk": ((20, 60),), "feishu": ((100, 60), (5, 1))}


@dataclass
class FakeClock:
    """The dispatcher's, the client's and the stand-in's clock: moved by the test alone."""

    # from the real now: the outbox dates what it queues by the real clock
    now: datetime = field(default_factory=lambda: datetime.now(UTC) + timedelta(seconds=1))

    def __call__(self) -> datetime:
        return self.now

    def epoch(self) -> float:
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass(frozen=True)
class Received:
    service: str
    title: str
    text: str
    body: dict[str, Any]


class RobotStandIn(Background):
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self.clock = clock
        self.received: list[Received] = []
        self.answers: Counter[str] = Counter()  # every post by service, whatever it was answered
        self._limited: Counter[str] = Counter()
        self._failing: Counter[str] = Counter()
        self._posted: defaultdict[str, list[datetime]] = defaultdict(list)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ the robots' URLs

    @property
    def base(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wecom(self, key: str = WECOM_KEY) -> str:
        return f"wecom:{self.base}/cgi-bin/webhook/send?key={key}"

    def dingtalk(self, token: str = DINGTALK_TOKEN, secret: str = DINGTALK_SECRET) -> str:
        return f"dingtalk:{self.base}/robot/send?access_token={token}#{secret}"

    def feishu(self, hook: str = FEISHU_HOOK, secret: str = FEISHU_SECRET) -> str:
        return f"feishu:{self.base}/open-apis/bot/v2/hook/{hook}#{secret}"

    def limit(self, service: str, times: int = 1) -> None:
        self._limited[service] += times

    def fail(self, service: str, times: int = 1) -> None:
        self._failing[service] += times

    def of(self, service: str) -> list[Received]:
        return [r for r in self.received if r.service == service]

    # ------------------------------------------------------------------ each service's checks

    def answer(
        self, path: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        if path == "/cgi-bin/webhook/send":
            return self._wecom(query, body)
        if path == "/robot/send":
            return self._dingtalk(query, body)
        if path.startswith("/open-apis/bot/v2/hook/"):
            return self._feishu(path.rpartition("/")[2], body)
        return 404, {"error": "no such robot path"}

    def _wecom(self, query: dict[str, list[str]], body: dict[str, Any]) -> tuple[int, Any]:
        if query.get("key") != [WECOM_KEY]:
            return 200, {"errcode": 93000, "errmsg": "invalid webhook url"}
        content = body.get("markdown", {}).get("content")
        if body.get("msgtype") != "markdown" or not isinstance(content, str) or not content:
            return 200, {"errcode": 40008, "errmsg": "invalid message type"}
        if len(content.encode()) > 4096:
            return 200, {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"}
        title, _, text = content.partition("\n")
        return self._take("wecom", title.strip("*"), text, body, {"errcode": 45009}, {"errcode": 0})

    def _dingtalk(self, query: dict[str, list[str]], body: dict[str, Any]) -> tuple[int, Any]:
        if query.get("access_token") != [DINGTALK_TOKEN]:
            return 200, {"errcode": 300001, "errmsg": "token is not exist"}
        stamp, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
        digest = hmac.new(
            DINGTALK_SECRET.encode(), f"{stamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256
        ).digest()
        if not stamp.isdigit() or sign != base64.b64encode(digest).decode():
            return 200, {"errcode": 310000, "errmsg": "sign not match"}
        if not self._within_an_hour(int(stamp) / 1000):
            return 200, {"errcode": 310000, "errmsg": "invalid timestamp"}
        markdown = body.get("markdown", {})
        title, text = markdown.get("title"), markdown.get("text")
        if body.get("msgtype") != "markdown" or not (isinstance(title, str) and title and text):
            return 200, {"errcode": 40035, "errmsg": "缺少参数 markdown"}
        return self._take("dingtalk", title, str(text), body, {"errcode": 130101}, {"errcode": 0})

    def _feishu(self, hook: str, body: dict[str, Any]) -> tuple[int, Any]:
        if hook != FEISHU_HOOK:
            return 200, {
                "code": 19001,
                "msg": "param invalid: incoming webhook access token invalid",
            }
        stamp, sign = str(body.get("timestamp", "")), body.get("sign")
        key = f"{stamp}\n{FEISHU_SECRET}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        if not stamp.isdigit() or sign != expected or not self._within_an_hour(int(stamp)):
            return 200, {
                "code": 19021,
                "msg": "sign match fail or timestamp is not within one hour",
            }
        card = body.get("card", {})
        title = card.get("header", {}).get("title", {}).get("content")
        texts = [e.get("text", {}) for e in card.get("elements", [])]
        markdown = [t.get("content") for t in texts if t.get("tag") == "lark_md"]
        if body.get("msg_type") != "interactive" or not title or not markdown:
            return 400, {"code": 9499, "msg": "Bad Request"}
        if len(json.dumps(body).encode()) > 20 * 1024:
            return 400, {"code": 9499, "msg": "request body too large"}
        limited = {"code": 11232, "msg": "frequency limited psm"}
        return self._take("feishu", title, "\n".join(markdown), body, limited, {"code": 0})

    def _within_an_hour(self, epoch: float) -> bool:
        return abs(epoch - self.clock().timestamp()) <= 3600

    def _take(
        self, service: str, title: str, text: str, body: dict[str, Any], limited: Any, ok: Any
    ) -> tuple[int, Any]:
        now = self.clock()
        posted = self._posted[service]
        over = any(
            sum(1 for at in posted if at > now - timedelta(seconds=seconds)) >= count
            for count, seconds in LIMITS[service]
        )
        if self._failing[service]:
            self._failing[service] -= 1
            return 500, {"error": "internal"}
        if self._limited[service] or over:
            self._limited[service] -= 1 if self._limited[service] else 0
            return 200, limited
        posted.append(now)
        self.received.append(Received(service, title, text, body))
        return 200, ok

    # ------------------------------------------------------------------ serving

    def start(self) -> Self:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with standin._lock:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        status, said = 400, {"errcode": 40016, "errmsg": "invalid json"}
                    else:
                        status, said = standin.answer(parts.path, parse_qs(parts.query), body)
                    standin.answers[SERVICE_OF.get(parts.path.split("/")[1], "?")] += 1
                data = json.dumps(said).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
