"""The satisfaction rating a customer's reply gives (core/ratings.py), and the signed links of the
closing letter: pure functions, tested by example and by Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from core.ratings import (
    MAC_CHARS,
    MAX_CHARS,
    Rating,
    RatingLinks,
    rating_token,
    read_rating,
    verified_rating,
)
from core.settings import Settings, SettingsError, load_settings

CONFIRM = ["确认", "確認", "同意", "confirm", "agree"]
NAMES = ["云帆财务", "上海云帆科技有限公司"]
SECRET = SecretStr("s" * 32)
OLD = SecretStr("o" * 32)


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("5分，非常满意，谢谢！", 5),
        ("5", 5),
        ("５", 5),  # full-width
        ("⑤ 分", 5),
        ("五分", 5),
        ("两分", 2),
        ("五星好评", 5),
        ("给你们打4分，辛苦了", 4),
        ("3分，一般", 3),
        ("2分，不满意", 2),
        ("十分满意！5分 👍", 5),
        ("确认，5分，谢谢", 5),  # a confirmation word beside it (it confirms too, in the window)
        ("4 stars", 4),
        ("Thanks, 5 out of 5!", 5),
        ("5/5", 5),
        ("rating: 4", 4),
        ("I give you 5 stars. Thank you!", 5),
        ("5分 谢谢\n云帆财务", 5),  # signed with the sender's name
        ("5分\n--\n张伟 13800000000\n上海市浦东新区", 5),  # a signature
        ("5分\n发自我的iPhone", 5),
    ],
)
def test_a_rating_alone(reply: str, score: int) -> None:
    assert read_rating(reply, NAMES, CONFIRM) == Rating(score, alone=True)


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("1分，发票还是错的，请重新处理", 1),
        ("评分：2。处理太慢了", 2),
        ("3/5, the invoice is still wrong", 3),
        ("5分\n但是发票还没有收到", 5),
        ("2 stars - nobody answered my call", 2),
        ("5分，3分", 5),  # two scores: the first leads, and the reply acts as any reply
    ],
)
def test_a_rating_that_says_more(reply: str, score: int) -> None:
    assert read_rating(reply, NAMES, CONFIRM) == Rating(score, alone=False)


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "确认",
        "非常满意，谢谢",  # no number: no rating
        "又收到了同样的错误账单。",
        "不同意，发票金额应为 ￥1,000.00。",
        "发票号 G000123456",
        "10分",  # not on the 1–5 scale
        "0",
        "6 stars",
        "4.5分",
        "15",
        "5分钟后再联系我",  # minutes
        "多扣了5分钱",  # cents
        "三分之一的费用多收了",  # a third
        "5元",
        "12月5日的账单",
        "1. 发票抬头错误\n2. 金额错误",
        "1-5",
        "不同意，1分",  # the negation of a confirmation word is no courtesy
    ],
)
def test_no_rating(reply: str) -> None:
    assert read_rating(reply, NAMES, CONFIRM) is None


COURTESY = st.sampled_from(
    ["谢谢", "非常满意", "满意", "不满意", "辛苦了", "好评", "thanks", "very satisfied", "👍", ""]
)
SCORE_TEXT = st.sampled_from(
    [
        "{}",
        "{}分",
        "{} 分",
        "{}星",
        "{} stars",
        "{} points",
        "{}/5",
        "评分：{}",
        "打{}分",
    ]
)
FULL_WIDTH = str.maketrans("12345", "１２３４５")
CHINESE = str.maketrans("12345", "一二三四五")


@settings(max_examples=300, deadline=None)
@given(
    score=st.integers(1, 5),
    shape=SCORE_TEXT,
    digits=st.sampled_from(["ascii", "full-width", "chinese"]),
    before=COURTESY,
    after=COURTESY,
    separator=st.sampled_from(["，", ",", " ", "！", "。", "\n"]),
)
def test_any_score_among_courtesy_words_is_a_rating_alone(
    score: int, shape: str, digits: str, before: str, after: str, separator: str
) -> None:
    number = str(score)
    if digits == "full-width":
        number = number.translate(FULL_WIDTH)
    elif digits == "chinese" and shape != "{}/5":
        number = number.translate(CHINESE)
    reply = separator.join(part for part in (before, shape.format(number), after) if part)
    assert read_rating(reply) == Rating(score, alone=True), reply


@settings(max_examples=300, deadline=None)
@given(
    score=st.integers(1, 5),
    complaint=st.sampled_from(["发票还是错的", "没人回复我", "金额不对", "the invoice is wrong"]),
)
def test_a_complaint_beside_a_score_is_never_a_rating_alone(score: int, complaint: str) -> None:
    for reply in (f"{score}分，{complaint}", f"{complaint}，{score}分", f"{score}\n{complaint}"):
        found = read_rating(reply)
        assert found is None or (found.score == score and not found.alone), reply


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=300), names=st.lists(st.text(max_size=20), max_size=3))
def test_any_text_gives_no_rating_or_one_from_1_to_5(text: str, names: list[str]) -> None:
    found = read_rating(text, names, CONFIRM)
    assert found is None or found.score in range(1, 6)


@settings(max_examples=300, deadline=None)
@given(
    head=st.sampled_from(["5分，", "５", "五星好评 ", "5 stars ", ""]),
    text=st.text(min_size=MAX_CHARS + 1, max_size=400).filter(
        lambda t: len(t.strip()) > MAX_CHARS and "\n" not in t and "-" not in t
    ),
)
def test_a_long_reply_is_never_a_rating_alone(head: str, text: str) -> None:
    found = read_rating(head + text)
    assert found is None or not found.alone


def test_a_huge_reply_is_read_quickly_and_is_no_rating_alone() -> None:
    found = read_rating("5分" + "谢谢" * 500_000)
    assert found == Rating(5, alone=False)


def test_a_link_token_binds_its_case_and_score() -> None:
    token = rating_token("BC-01KBCW3Z5Q8RDJ5Y1T2V3X4W9N", 5, SECRET)
    case_id, score, mac = token.split(".")
    assert (case_id, score, len(mac)) == ("BC-01KBCW3Z5Q8RDJ5Y1T2V3X4W9N", "5", MAC_CHARS)
    assert verified_rating(token, [SECRET]) == ("BC-01KBCW3Z5Q8RDJ5Y1T2V3X4W9N", 5)
    assert verified_rating(token, [OLD, SECRET]) is not None  # while the secret is rotated
    assert verified_rating(token, [OLD]) is None
    assert verified_rating(token, []) is None
    assert verified_rating(f"{case_id}.1.{mac}", [SECRET]) is None  # another score
    assert verified_rating(f"BC-OTHER.5.{mac}", [SECRET]) is None  # another case
    with pytest.raises(ValueError, match="score"):
        rating_token(case_id, 6, SECRET)


@settings(max_examples=300, deadline=None)
@given(token=st.text(max_size=120))
def test_no_made_up_token_verifies(token: str) -> None:
    assert verified_rating(token, [SECRET]) is None


def test_the_links_are_signed_with_the_newest_secret() -> None:
    links = RatingLinks("https://billing-api.partner.example.cn", (OLD, SECRET))
    url = links.url("BC-1", 4)
    assert url.startswith("https://billing-api.partner.example.cn/r/BC-1.4.")
    token = url.rpartition("/")[2]
    assert links.verified(token) == ("BC-1", 4)
    assert RatingLinks(links.base_url, (SECRET,)).verified(token) == ("BC-1", 4)


def test_the_public_url_setting_is_checked_and_makes_the_links(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_PUBLIC_URL", "billing-api.partner.example.cn")
    with pytest.raises(SettingsError, match="api_public_url"):
        load_settings()
    monkeypatch.setenv("API_PUBLIC_URL", "https://billing-api.partner.example.cn/")
    monkeypatch.setenv("EMAIL_THREAD_SECRET", "o" * 32 + "," + "s" * 32)
    links = load_settings().rating_links()
    assert links is not None and links.base_url == "https://billing-api.partner.example.cn"
    assert links.url("BC-1", 3) == "https://billing-api.partner.example.cn/r/" + rating_token(
        "BC-1", 3, SECRET
    )
    monkeypatch.delenv("EMAIL_THREAD_SECRET")
    assert load_settings().rating_links() is None  # nothing to sign them with: no links
    monkeypatch.delenv("API_PUBLIC_URL")
    assert Settings(email_thread_secret=SECRET).rating_links() is None
