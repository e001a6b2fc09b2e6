"""The shared mailbox of Microsoft 365 operated by 21Vianet, read through Microsoft Graph: a mailbox
of intake/mailbox.py. New mail is what the inbox's delta query returns, each message's MIME is
``GET .../messages/{id}/$value``; received, it moves to the "Processed" folder, broken, to
"Failed" (both made when missing). Sources and what is not verified: docs/microsoft-365.md.

The inbox holds exactly the mail not yet set aside, so a round of the delta query starts from the
delta link stored when every message of the previous round was set aside, never from a newer
one: a crash, or a receive that waits (TryLater), reads the same messages again (the inbound
service's dedup keeps them from acting twice), and what was moved out meanwhile comes back
``@removed``, which is ignored. The stored link (GRAPH_DELTA_FILE) only saves work: without it
the first round lists the inbox whole, which is again exactly the mail not yet set aside.

Microsoft's v1.0 reference lists message delta as not offered in the 21Vianet cloud (its beta
does): where the first delta request is refused as unsupported, the inbox is listed instead,
oldest first. Throttling (429, its Retry-After kept) and outages are MailboxUnavailable: the loop
backs off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.files import write_atomically
from core.graph import GraphClient, GraphError, graph_client
from core.settings import Settings
from intake.mailbox import MailboxUnavailable, Message

log = logging.getLogger("inbound.graph")

PROCESSED = "Processed"
FAILED = "Failed"
PAGE_SIZE = 50  # messages a page (Prefer: odata.maxpagesize), and the most a listing takes
MAX_PAGES = 1000  # a round longer than this is a server that keeps answering nextLink
SELECT = "id,receivedDateTime"
# what Graph answers a function it does not offer (the delta query, in a national cloud)
UNSUPPORTED = frozenset({400, 404, 405, 501})


class GraphMailbox:
    def __init__(
        self,
        client: GraphClient,
        state_file: Path,
        *,
        processed: str = PROCESSED,
        failed: str = FAILED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.state_file = Path(state_file)
        self.folders = {PROCESSED: processed, FAILED: failed}
        self.name = client.url("/mailFolders/inbox")
        self._clock = clock
        self._folder_ids: dict[str, str] = {}
        self._stored = self._load()  # where the next round starts (None: the inbox whole)
        self._next: str | None = None  # where the round after this one's messages will start
        self._unsettled: set[str] = set()
        self._delta = True
        self._quiet_until = 0.0  # Graph's Retry-After, on our clock

    # ----------------------------------------------------------------------- the Mailbox

    async def new(self) -> list[Message]:
        return await asyncio.to_thread(self._new)

    async def done(self, message: Message) -> None:
        await asyncio.to_thread(self._set_aside, message.key, PROCESSED)

    async def failed(self, message: Message, reason: str) -> None:
        log.warning("inbound %s set aside in %s: %s", message.key, self.folders[FAILED], reason)
        await asyncio.to_thread(self._set_aside, message.key, FAILED)

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)

    # ----------------------------------------------------------------------- reading

    def _new(self) -> list[Message]:
        if self._clock() < self._quiet_until:
            left = self._quiet_until - self._clock()
            raise MailboxUnavailable(f"{self.name}: Graph asked for {left:.0f} s more of quiet")
        ids = self._round() if self._delta else self._listing()
        messages = []
        for key in ids:
            raw = self._mime(key)
            if raw is not None:
                messages.append(Message(key, raw))
        self._unsettled = {m.key for m in messages}
        self._settle()
        return messages

    def _round(self) -> list[str]:
        """The ids in the inbox changed since the stored link, oldest first; keeps the round's
        delta link for when they are all set aside."""
        url = self._stored or self.client.url("/mailFolders/inbox/messages/delta")
        params = None if self._stored else {"$select": SELECT}
        received: dict[str, str] = {}
        for _ in range(MAX_PAGES):
            try:
                page = self._get(url, "delta query of the inbox", params, paged=True)
            except GraphError as err:
                if err.status == 410 and self._stored:  # the sync state expired: start anew
                    log.warning("%s: delta link expired, reading the inbox whole", self.name)
                    self._stored = None
                    return self._round()
                if err.status in UNSUPPORTED and not self._stored:
                    log.warning("%s: no delta query here (%s), listing the inbox", self.name, err)
                    self._delta = False
                    return self._listing()
                raise self._unavailable(err) from err
            for item in _items(page):
                if "@removed" in item:  # moved out (set aside) or deleted: nothing to read
                    received.pop(str(item["id"]), None)
                else:
                    received[str(item["id"])] = str(item.get("receivedDateTime") or "")
            if isinstance(page.get("@odata.nextLink"), str):
                url, params = page["@odata.nextLink"], None
                continue
            if isinstance(page.get("@odata.deltaLink"), str):
                self._next = page["@odata.deltaLink"]
                return sorted(received, key=lambda key: (received[key], key))
            raise MailboxUnavailable(f"{self.name}: a delta page with no nextLink or deltaLink")
        raise MailboxUnavailable(f"{self.name}: more than {MAX_PAGES} delta pages in one round")

    def _listing(self) -> list[str]:
        """The oldest messages of the inbox (a page of them: the next look takes the rest)."""
        url = self.client.url("/mailFolders/inbox/messages")
        params = {"$select": SELECT, "$orderby": "receivedDateTime asc", "$top": str(PAGE_SIZE)}
        try:
            page = self._get(url, "list of the inbox", params)
        except GraphError as err:
            raise self._unavailable(err) from err
        return [str(item["id"]) for item in _items(page)]

    def _mime(self, key: str) -> bytes | None:
        """The message as RFC 5322 bytes; None when it is gone (a person moved it meanwhile)."""
        try:
            response = self.client.request(
                "GET", self.client.url(f"/messages/{key}/$value"), f"MIME of message {key}"
            )
        except GraphError as err:
            if err.status == 404:
                log.info("%s: message %s left the inbox before it was read", self.name, key)
                return None
            raise self._unavailable(err) from err
        return response.content

    def _get(
        self, url: str, what: str, params: dict[str, str] | None, *, paged: bool = False
    ) -> dict[str, Any]:
        headers = {"Prefer": f"odata.maxpagesize={PAGE_SIZE}"} if paged else None
        response = self.client.request("GET", url, what, params=params, headers=headers)
        try:
            page = response.json()
        except ValueError:
            page = None
        if not isinstance(page, dict):
            raise MailboxUnavailable(f"{self.name}: {what}: HTTP {response.status_code}, no JSON")
        return page

    # ----------------------------------------------------------------------- setting aside

    def _set_aside(self, key: str, folder: str) -> None:
        destination = self._folder_id(folder)
        try:
            self.client.request(
                "POST",
                self.client.url(f"/messages/{key}/move"),
                f"move of message {key} to {self.folders[folder]}",
                json={"destinationId": destination},
            )
        except GraphError as err:
            if err.status != 404:  # 404: moved already (an earlier attempt's answer was lost)
                raise self._unavailable(err) from err
        self._unsettled.discard(key)
        self._settle()

    def _folder_id(self, folder: str) -> str:
        """The id of the top-level folder of that name, made when the mailbox has none."""
        if folder not in self._folder_ids:
            name = self.folders[folder]
            try:
                found = self._find_folder(name) or self._make_folder(name)
            except GraphError as err:
                raise self._unavailable(err) from err
            self._folder_ids[folder] = found
        return self._folder_ids[folder]

    def _find_folder(self, name: str) -> str | None:
        quoted = name.replace("'", "''")
        params = {"$filter": f"displayName eq '{quoted}'", "$select": "id,displayName"}
        page = self._get(self.client.url("/mailFolders"), f"folder {name}", params)
        return next((str(f["id"]) for f in _items(page) if f.get("displayName") == name), None)

    def _make_folder(self, name: str) -> str:
        try:
            response = self.client.request(
                "POST",
                self.client.url("/mailFolders"),
                f"new folder {name}",
                json={"displayName": name},
            )
        except GraphError as err:
            made = self._find_folder(name) if err.status == 409 else None  # made meanwhile
            if made is None:
                raise
            return made
        return str(response.json()["id"])

    # ----------------------------------------------------------------------- the delta link

    def _settle(self) -> None:
        """Every message of the round set aside: the next round starts after it."""
        if self._unsettled or self._next is None or self._next == self._stored:
            return
        self._stored, self._next = self._next, None
        state = {"mailbox": self.client.mailbox, "graph": self.client.base_url}
        data = json.dumps({**state, "delta_link": self._stored}, indent=1).encode()
        try:
            write_atomically(self.state_file, data)
        except OSError as err:  # kept in memory: a restart reads the inbox whole, nothing lost
            log.warning("%s: delta link not stored in %s: %s", self.name, self.state_file, err)

    def _load(self) -> str | None:
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            log.warning(
                "%s: %s unreadable, reading the inbox whole: %s", self.name, self.state_file, err
            )
            return None
        ours = {"mailbox": self.client.mailbox, "graph": self.client.base_url}
        if not isinstance(state, dict) or any(state.get(k) != v for k, v in ours.items()):
            return None  # another mailbox's link
        link = state.get("delta_link")
        return link if isinstance(link, str) else None

    def _unavailable(self, err: GraphError) -> MailboxUnavailable:
        if err.retry_after:
            self._quiet_until = self._clock() + err.retry_after
        return MailboxUnavailable(str(err))


def _items(page: dict[str, Any]) -> list[dict[str, Any]]:
    value = page.get("value")
    return (
        [item for item in value if isinstance(item, dict) and "id" in item]
        if isinstance(value, list)
        else []
    )


def graph_mailbox(settings: Settings) -> GraphMailbox:
    """The shared mailbox (M365_MAILBOX, else EMAIL_FROM) read through Graph; SettingsError
    naming any M365_* setting it needs and is not set."""
    return GraphMailbox(
        graph_client(settings, "reading mail with Graph"), settings.graph_delta_file
    )
