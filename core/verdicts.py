"""What SendGrid Inbound Parse says of an email's sender, posted beside the message: ``SPF``
(whether the server that delivered it may send for the envelope sender's domain: ``pass``,
``fail``, ``softfail``, ``neutral``, ``none``, ``temperror``, ``permerror``) and ``dkim`` (each
signature's domain and result, ``{@yunfan.example.cn : pass, @mailer.example : fail}``). Anyone
can write a From address; these are what says it was forged. Knows nothing of HTTP or Temporal.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

SPF_FAILS = ("fail", "softfail")
SPF_CHARS, DKIM_CHARS = 32, 500  # as the inbound mail record keeps them
_SIGNATURE = re.compile(r"@?([^\s:{},@]+)\s*:\s*([A-Za-z]+)")


@dataclass(frozen=True)
class Verdicts:
    """None: no verdict came with the email (the CLI's file, the drop folder: an operator's)."""

    spf: str | None = None
    dkim: str | None = None

    @classmethod
    def posted(cls, spf: bytes | None, dkim: bytes | None) -> Verdicts:
        """The form's fields as the record keeps them: text, without controls, bounded."""
        return cls(_field(spf, SPF_CHARS), _field(dkim, DKIM_CHARS))

    def problem(self, sender: str) -> str | None:
        """Why an email from ``sender`` may not be theirs, or None: SPF failed or soft-failed, or
        every DKIM signature of the sender's domain failed (a domain that signs nothing may)."""
        spf = (self.spf or "").lower().split()
        if spf and spf[0] in SPF_FAILS:
            return f"SPF {spf[0]}"
        domain = sender.rpartition("@")[2].lower()
        theirs = [
            result.lower()
            for signer, result in _SIGNATURE.findall(self.dkim or "")
            if _aligned(signer.lower().rstrip("."), domain)
        ]
        if theirs and "pass" not in theirs:
            return f"DKIM {theirs[0]} for {domain}"
        return None


def _aligned(signer: str, domain: str) -> bool:
    """Whether a signature of ``signer`` speaks for ``domain``: the same, or one a subdomain of
    the other (a company's mail server signing as mail.example.cn for example.cn)."""
    if "." not in signer or not domain:
        return False
    return signer == domain or domain.endswith(f".{signer}") or signer.endswith(f".{domain}")


def _field(value: bytes | None, chars: int) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", "replace")
    kept = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    return " ".join(kept.split())[:chars]
