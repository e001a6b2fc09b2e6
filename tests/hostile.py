"""Hostile values for property tests: what a careless export, a confused client or an attacker
sends in place of an amount, a currency, a locale, an id, a moment, an email or a text."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st
from sqlalchemy import text

from db.session import make_engine

CONTROL = "".join(chr(c) for c in (0, 7, 8, 11, 12, 27, 127))
# the texts people and systems really send that break things; also fed to the letters as-is
ODD_TEXTS = [
    "",
    "   ",
    "\u202eevil.exe",  # right-to-left override
    "云帆" * 10_001,  # over LongText's 20 000 characters
    "a" * 20_000,
    "x" * 501,
    '=HYPERLINK("http://evil.example")',
    "<script>alert(1)</script>",
    "Robert'); DROP TABLE cases;--",
    "👍🏽" * 50,
    "tab\there",
    "line\nbreak",
    CONTROL,
    "deleted\u0000 VM",  # NUL: PostgreSQL refuses it in text
    "C1\x85next\x9bline",  # C1 controls
    "lone \ud800 surrogate",  # no UTF-8 has it: PostgreSQL and Temporal refuse it
    "isolate \u2066x\u2069",
    "云帆" * 10_000,  # 20,000 characters: 60 KB of UTF-8, the most a long text takes
    "e\u0301",  # a combining accent: stored as NFC
]
odd_text = st.sampled_from(ODD_TEXTS)
texts = st.one_of(st.text(max_size=60), odd_text)
amounts: st.SearchStrategy[Any] = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(min_value=-10, max_value=10**13, places=3).map(str),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            *["0", "-0", "0.001", "1e3", "1E-2", "999999999999.99", "1000000000000", "NaN"],
            *["-Infinity", "sNaN", "12,340.00", "¥100", " 5 ", "1_000", "0x10", "１２３"],
        ]
    ),
)
currencies = st.one_of(
    st.sampled_from(["CNY", "USD", "cny", "CN", "CNYY", "", " CNY", "RMB", "¥"]),
    st.text(max_size=4),
)
locales = st.one_of(
    st.sampled_from(["zh-CN", "en-US", "zh_CN", "ZH-CN", "fr-FR", "zh-Hans-CN", ""]),
    st.text(max_size=8),
)
ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,140}", fullmatch=True),
    st.sampled_from(["", "../etc/passwd", "INV/1", "G 123", "-G1", "é1"]),
    st.text(max_size=40),
)
moments = st.one_of(
    st.datetimes(timezones=st.none() | st.just(UTC)).map(lambda d: d.isoformat()),
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.timezones()
    ).map(lambda d: d.isoformat()),
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["2026-02-30T00:00:00+08:00", "2026-11-24T25:00:00Z", "yesterday", "", "0"]),
    st.integers(min_value=-(10**12), max_value=10**12),
)
emails = st.one_of(
    st.emails().map(str),
    st.sampled_from(
        ["finance@", "@x.cn", "a b@x.cn", "财务@云帆.中国", "x@x", "a@b.c" + "c" * 300]
    ),
    texts,
)
junk: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)


def values_for(name: str) -> st.SearchStrategy[Any]:
    """Hostile values for a field, by what its name says it holds; any field also gets junk."""
    kinds: list[tuple[Callable[[str], bool], st.SearchStrategy[Any]]] = [
        (lambda n: "amount" in n or n in ("paid", "balance", "credited"), amounts),
        (lambda n: n == "currency", currencies),
        (lambda n: n == "locale", locales),
        (lambda n: n.endswith("_at") or n in ("until", "due_date"), moments),
        (lambda n: "email" in n or n in ("agent", "owner"), emails),
        (lambda n: n.endswith(("_id", "_ids", "_number")), ids),
    ]
    specific = [strategy for matches, strategy in kinds if matches(name)]
    return st.one_of(*specific, texts, junk) if specific else st.one_of(texts, junk)


@contextmanager
def poisoned_notes(url: str) -> Iterator[None]:
    """While open, the database refuses a case event whose text holds POISON (a rule added by
    hand, which no edge can know): the save of such a note fails for good."""
    engine = make_engine(url)
    refuse, allow = (
        (
            "ALTER TABLE case_events ADD CONSTRAINT ck_no_poison"
            " CHECK (position('POISON' in text) = 0)",
            "ALTER TABLE case_events DROP CONSTRAINT ck_no_poison",
        )
        if url.startswith("postgresql")
        else (
            "CREATE TRIGGER no_poison BEFORE INSERT ON case_events WHEN instr(NEW.text, 'POISON')"
            " BEGIN SELECT RAISE(ABORT, 'poisoned note'); END",
            "DROP TRIGGER no_poison",
        )
    )
    with engine.begin() as connection:
        connection.execute(text(refuse))
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(text(allow))
        engine.dispose()
