"""Scenario 8's agents, for locust (`locust -f bench/locustfile.py`, run by bench/team.py).

Each simulated user signs in as one agent of the team file ($BENCH_TEAM: their emails, the
password, the cases each owns) and, with think time between, does what an agent does all day:
opens queues and cases, adds internal notes, replies to customers and resolves cases. Pages are
named "page: …", actions "action: …"; an action is its POST alone (its 303 answer), the page it
leads to is timed as a page. Every request's time and outcome is appended to $BENCH_TIMES (JSON
lines), so the bench computes exact percentiles over all pages and all actions.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from itertools import count
from typing import Any

from locust import HttpUser, between, events, task
from locust.exception import StopUser
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

with open(os.environ["BENCH_TEAM"], encoding="utf-8") as team_file:
    TEAM: dict[str, Any] = json.load(team_file)
THINK = TEAM["think_seconds"]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
REQUEST_KEY = re.compile(r'name="request_key" value="([^"]+)"')
SIGN_IN_TRIES = 30
QUEUES = ["mine", "unassigned", "sla", "waiting-on-customer"]
_next_agent = count()
_times = open(os.environ["BENCH_TIMES"], "a", encoding="utf-8")  # noqa: SIM115 -- closed on quit


def _timed(name: str, response_time: float, exception: Exception | None, **_: Any) -> None:
    error = None if exception is None else str(exception)[:300]
    _times.write(json.dumps({"name": name, "ms": response_time, "error": error}) + "\n")


def _close(**_: Any) -> None:
    _times.close()


events.request.add_listener(_timed)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_close)  # type: ignore[no-untyped-call]


class Agent(HttpUser):
    wait_time = between(*THINK)

    def on_start(self) -> None:
        # as a browser does, a GET whose kept-alive connection the server closed meanwhile (its
        # keep-alive of 5 s is shorter than some think times) is sent again on a new one
        retry = Retry(total=1, connect=1, read=1, status=0, allowed_methods=["GET"])
        self.client.mount("http://", HTTPAdapter(max_retries=retry))
        agent = TEAM["agents"][next(_next_agent) % len(TEAM["agents"])]
        self.cases: list[str] = list(agent["cases"])
        random.shuffle(self.cases)
        for attempt in range(1, SIGN_IN_TRIES + 1):
            token = self._token(self.client.get("/login", name="sign-in: page").text)
            data = {"email": agent["email"], "password": TEAM["password"], "csrf_token": token}
            with self.client.post(
                "/login",
                data=data,
                name="sign-in: post",
                allow_redirects=False,
                catch_response=True,
            ) as answer:
                if answer.status_code == 303:
                    return
                if answer.status_code != 429 or attempt == SIGN_IN_TRIES:
                    answer.failure(f"sign-in answered {answer.status_code}")
                    raise StopUser
                # the workspace checks a few passwords at a time and says when to come back
                answer.success()
                wait = float(answer.headers.get("retry-after", "1"))
            time.sleep(wait + random.random())

    @staticmethod
    def _token(html: str) -> str:
        found = CSRF.search(html)
        return found.group(1) if found else ""

    def _case_page(self, case_id: str) -> str:
        """The case's page ("" when it failed: no action is sent from it)."""
        with self.client.get(f"/cases/{case_id}", name="page: case", catch_response=True) as page:
            if page.status_code != 200:
                page.failure(f"case page answered {page.status_code or page.error}")
                return ""
            return str(page.text)

    def _act(self, what: str, path: str, data: dict[str, str], page: str) -> None:
        """POST an action of a case's page; 303 is its success (a refusal re-renders: 409)."""
        if not page:
            return
        data = {**data, "csrf_token": self._token(page)}
        with self.client.post(
            path, data=data, name=f"action: {what}", allow_redirects=False, catch_response=True
        ) as answer:
            if answer.status_code != 303:
                answer.failure(f"{what} answered {answer.status_code}")
                return
            location = answer.headers["location"]
        self.client.get(location, name="page: case")

    @task(4)
    def queue(self) -> None:
        queue = random.choice(QUEUES)
        self.client.get(f"/queues/{queue}?page={random.randint(1, 2)}", name="page: queue")

    @task(4)
    def open_case(self) -> None:
        if self.cases:
            self._case_page(random.choice(self.cases))

    @task(2)
    def note(self) -> None:
        if self.cases:
            case_id = random.choice(self.cases)
            page = self._case_page(case_id)
            text = "Checked the billing export: the charge matches the usage."
            self._act("note", f"/cases/{case_id}/actions/note", {"text": text}, page)

    @task(1)
    def reply(self) -> None:
        if self.cases:
            case_id = random.choice(self.cases)
            page = self._case_page(case_id)
            key = REQUEST_KEY.search(page)
            data = {
                "text": "您好，我们正在核对这张发票，今天内给您答复。",
                "subject": "",
                "locale": "",
            }
            data["request_key"] = key.group(1) if key else ""
            self._act("reply", f"/cases/{case_id}/reply", data, page)

    @task(1)
    def resolve(self) -> None:
        if len(self.cases) > 1:  # the last one stays open for the notes and replies
            case_id = self.cases.pop()
            page = self._case_page(case_id)
            data = {"outcome": "explained", "summary": "费用与用量一致，详见附件说明。"}
            self._act("resolve", f"/cases/{case_id}/actions/resolve", data, page)
