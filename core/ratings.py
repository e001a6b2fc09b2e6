"""A customer's satisfaction rating, as they answer the closing letter's 1–5 question: read from a
reply's new text, or from a signed link in the letter.

``read_rating`` is pure and never raises. A reply is a rating *alone* when, past the customer's
own name and a signature, it is short and holds one score from 1 to 5 (``5``, ``５``, ``五分``,
``4 stars``, ``5/5``) and nothing but courtesy and satisfaction words (谢谢, 非常满意, thanks):
such a reply is a rating and nothing else. A reply that *begins* with an explicit score (``1分，
发票还是错的``; a score word or unit is required) says something else too: the score is kept, and
the rest acts as any reply would. Anything else is no rating.

A link's token binds a case and a score under EMAIL_THREAD_SECRET (``old,new`` while it is
rotated: the last signs, each verifies), in a message of its own kind, so neither a thread token
nor a link for another case or score can be made from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

SCORES = range(1, 6)
SATISFIED = 4  # a score of at least this counts as satisfied in the report
MAX_CHARS = 60  # a rating alone is short: a longer reply says something else as well
READ_CHARS = 2_000  # of a reply, read at all
MAC_CHARS = 26  # 130 bits of HMAC-SHA256 in lower-case base 32
PATH = "/r/"

_NUMERALS = {"一": 1, "壹": 1, "二": 2, "两": 2, "贰": 2, "三": 3, "叁": 3}
_NUMERALS |= {"四": 4, "肆": 4, "五": 5, "伍": 5, "one": 1, "two": 2, "three": 3}
_NUMERALS |= {"four": 4, "five": 5}
# 分 is also a cent (5分钱), a minute (5分钟) and a fraction (三分之一)
_UNIT = r"(?:(?:颗星|分|星|points?|pts?|stars?)(?![钟钱之期半]))"
_OUT_OF = rf"(?P<of>\s*(?:/|out\s+of|of)\s*5(?![0-9])\s*{_UNIT}?)"
_NUMBER = r"(?P<n>[1-5](?![0-9]|[.,][0-9])|[一壹二两贰三叁四肆五伍]|(?:one|two|three|four|five)\b)"
_SCORE = re.compile(rf"{_NUMBER}\s*(?P<unit>{_UNIT})?{_OUT_OF}?")
# a reply that begins with a score it names as one: a score word before it, or a unit after it
_LEADING = re.compile(
    rf"(?:我|i)?\s*(?:给(?:你们|您|贵司)?)?\s*(?P<word>打分|评分|打|评价|满意度|rating|score|rate)?"
    rf"\s*[:=]?\s*{_NUMBER}\s*(?P<unit>{_UNIT})?{_OUT_OF}?"
)
# courtesy and satisfaction: what may stand beside a score in a rating alone (longest first)
_WORDS = sorted(
    [
        *("谢谢", "谢啦", "谢了", "多谢", "感谢", "非常感谢", "辛苦了", "辛苦", "您好", "你好"),
        *("满意", "不满意", "不太满意", "很不满意", "非常", "十分", "特别", "比较", "挺", "很"),
        *("还行", "还可以", "可以", "一般", "一般般", "不错", "很好", "非常好", "好评", "差评"),
        *("好的", "好", "棒", "赞", "的", "了", "啊", "呀", "哦", "吧", "嗯", "我", "给", "打"),
        *("评分", "打分", "评价", "满意度", "服务", "你们", "您", "贵司", "满分", "分", "星"),
        *("thanks", "thank you", "thank", "thx", "cheers", "very", "really", "so", "much"),
        *("satisfied", "dissatisfied", "unsatisfied", "happy", "unhappy", "not", "good"),
        *("great", "excellent", "ok", "okay", "fine", "poor", "bad", "i", "give", "rate"),
        *("rating", "score", "my", "is", "it", "the", "service", "overall", "regards"),
        *("you", "a", "for", "we", "all", "and", "your", "from", "me"),
    ],
    key=len,
    reverse=True,
)
_WORD = re.compile(
    "|".join(re.escape(w) + (r"\b" if w.isascii() else "") for w in _WORDS), re.IGNORECASE
)
# what a mail client puts under the text: a signature and everything after it
_SIGNATURE = re.compile(
    r"^(?:--|——|发自我的.{0,20}|sent from my .{0,30}|从我的.{0,20}发送"
    r"|来自.{0,20}(?:邮箱|邮件|mail).*)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Rating:
    score: int
    alone: bool  # the reply is this rating and nothing else


def read_rating(text: str, names: Iterable[str] = (), words: Iterable[str] = ()) -> Rating | None:
    """The rating a reply's new text gives, if any. `names`: the customer's own names, a line of
    which is a sign-off, not something said; `words`: more words that may stand beside a score
    in a rating alone (the confirmation words). Never raises; a score is always 1 to 5."""
    said = _said(text[:READ_CHARS], {_fold(n) for n in names if n and n.strip()})
    if not said:
        return None
    if len(said) <= MAX_CHARS:
        scores = _scores_alone(_without(said, words))
        if scores is not None and len(scores) == 1:
            return Rating(scores[0], alone=True)
    leading = _LEADING.match(said)
    if leading is not None and (leading["word"] or leading["unit"] or leading["of"]):
        return Rating(_value(leading.group("n")), alone=False)
    return None


def _fold(text: str) -> str:
    # full-width digits and letters, circled digits, the full-width comma: as their plain forms
    return unicodedata.normalize("NFKC", text).strip().lower()


def _said(text: str, names: set[str]) -> str:
    """The reply's lines that say something, folded: up to a signature, without sign-off lines
    that are only the customer's name."""
    lines = []
    for line in _fold(text).splitlines():
        line = line.strip()
        if _SIGNATURE.fullmatch(line):
            break
        if line and line.strip(" ,.;:!~-") not in names:
            lines.append(line)
    return "\n".join(lines)


def _without(text: str, words: Iterable[str]) -> str:
    """The text with each of `words` taken out (a space in its place)."""
    for word in sorted({_fold(w) for w in words if w and w.strip()}, key=len, reverse=True):
        text = text.replace(word, " ")
    return text


def _scores_alone(text: str) -> list[int] | None:
    """The scores of a text made of scores, courtesy words and punctuation only; None when it
    holds anything else. One pass from the left, each step a bounded match."""
    scores: list[int] = []
    at = 0
    while at < len(text):
        if _separator(text[at]):
            at += 1
            continue
        word = _WORD.match(text, at)
        if word is not None:
            at = word.end()
            continue
        score = _SCORE.match(text, at)
        if score is None:
            return None
        scores.append(_value(score.group("n")))
        at = score.end()
    return scores


def _separator(char: str) -> bool:
    """Spaces, punctuation and symbols (emoji among them): never a digit or a letter."""
    return unicodedata.category(char)[0] in "ZPSC"


def _value(number: str) -> int:
    return _NUMERALS.get(number) or int(number)


# --------------------------------------------------------------------------- links


def _mac(case_id: str, score: int, secret: SecretStr) -> str:
    message = f"case-rating\n{case_id}\n{score}".encode()
    digest = hmac.new(secret.get_secret_value().encode(), message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:MAC_CHARS]


def rating_token(case_id: str, score: int, secret: SecretStr) -> str:
    """``<case id>.<score>.<mac>``: a case id holds no dot (core.models CaseId)."""
    if score not in SCORES:
        raise ValueError(f"score: {score} is not 1 to 5")
    return f"{case_id}.{score}.{_mac(case_id, score, secret)}"


def verified_rating(token: str, secrets: Sequence[SecretStr]) -> tuple[str, int] | None:
    """The case and score a token was signed for under one of `secrets`; None for any other
    string (altered, forged, or of no secret at all)."""
    case_id, _, rest = token.partition(".")
    score_text, _, mac = rest.partition(".")
    if not case_id or score_text not in {str(s) for s in SCORES} or len(mac) != MAC_CHARS:
        return None
    score = int(score_text)
    matches = [  # every secret is tried: the time taken says nothing of which one
        hmac.compare_digest(mac.encode(), _mac(case_id, score, s).encode()) for s in secrets
    ]
    return (case_id, score) if secrets and any(matches) else None


@dataclass(frozen=True)
class RatingLinks:
    """The closing letter's links: ``<API_PUBLIC_URL>/r/<token>``, one per score."""

    base_url: str
    secrets: tuple[SecretStr, ...]

    def url(self, case_id: str, score: int) -> str:
        return f"{self.base_url}{PATH}{rating_token(case_id, score, self.secrets[-1])}"

    def verified(self, token: str) -> tuple[str, int] | None:
        return verified_rating(token, self.secrets)
