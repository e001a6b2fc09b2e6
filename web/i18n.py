"""The workspace in zh-CN and en-US: the page texts are English message ids in the templates and
`web/actions/`, translated by Babel from `web/locale/<locale>/LC_MESSAGES/messages.po` (read and
compiled in memory at start: no build step, no binary file in the repository)."""

from __future__ import annotations

import functools
from gettext import NullTranslations
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from core.models import Locale


def _(message: str) -> str:
    """Marks a text for translation (Babel extracts it); the page translates it as it renders."""
    return message


# the codes pages show (statuses, categories, priorities, outcomes, roles...): en-US shows the
# code itself, zh-CN its translation
CODES = (
    _("open"),
    _("waiting-on-customer"),
    _("escalation-pending"),
    _("waiting-on-21vianet"),
    _("waiting-on-finance"),
    _("waiting-on-buyer-confirmation"),
    _("resolving"),
    _("resolved"),
    _("closed"),
    _("withdrawn"),
    _("merged"),
    _("low"),
    _("normal"),
    _("high"),
    _("urgent"),
    _("invoice-dispute"),
    _("unexpected-charge"),
    _("refund-request"),
    _("payment"),
    _("credit-note"),
    _("subscription-change"),
    _("billing-question"),
    _("fraud-concern"),
    _("fapiao"),
    # fapiao tasks and kinds, and the fapiao page's actions
    _("issue"),
    _("reissue"),
    _("red-letter"),
    _("blue"),
    _("red"),
    _("request-fapiao"),
    _("buyer"),
    _("done"),
    _("credit-issued"),
    _("refund-issued"),
    _("invoice-corrected"),
    _("charge-upheld"),
    _("explained"),
    _("agent"),
    _("manager"),
    _("finance"),
    _("admin"),
    _("active"),
    _("paused-dispute"),
    _("paused-promise"),
    _("handed-off"),
    _("paid"),
    _("credited"),
    _("waived"),
    _("expired"),
    _("unpaid"),
    _("overdue"),
    _("no-action"),
    _("contact-confirmed"),
    _("first_response"),
    _("first response"),
    _("resolution"),
    _("take"),
    _("note"),
    _("request-info"),
    _("customer-reply"),
    _("escalate"),
    _("vianet-ticket"),
    _("vianet-response"),
    _("resolve"),
    _("contact"),
    _("confirm"),
    _("reopen"),
    _("withdraw"),
    _("merge"),
    _("link"),
    _("unlink"),
    _("assign"),
    _("dispute"),
    _("promise"),
    _("triage"),
    _("fraud"),
    _("resume"),
    _("waive"),
    _("record"),
    # our emails' states (activities/email.py) and SendGrid's word on their delivery
    _("pending"),
    _("sent"),
    _("rejected"),
    _("processed"),
    _("deferred"),
    _("delivered"),
    _("bounce"),
    _("dropped"),
    _("blocked"),
    _("spamreport"),
    # the steps of the shipped collections policy (config/collections_policy.toml); a partner's
    # own step names show as written
    _("payment-failed"),
    _("reminder"),
    _("final-notice"),
    _("suspension"),
    _("deletion-warning"),
    _("last-deletion-warning"),
    _("hand-off"),
    # who did what the timeline shows, when no person did (workflows/effects.py, the billing system)
    _("workflow"),
    _("billing-system"),
    _("payment failed"),  # the billing system's reason when it gives none (BillingFailure)
    _("customer"),
    _("customer (email)"),
    # the collections stage that waits for a manager (workflows/collections/rules.py)
    _("awaiting-approval"),
    # the languages of customers, letters and people
    _("zh-CN"),
    _("en-US"),
    # the kinds of a timeline's events (core/models/shared.py EventKind)
    _("opened"),
    _("assigned"),
    _("info-requested"),
    _("customer-replied"),
    _("replied"),
    _("customer-reminded"),
    _("escalated"),
    _("21vianet-ticket"),
    _("21vianet-follow-up"),
    _("21vianet-response"),
    _("customer-told"),
    _("confirmed"),
    _("reopened"),
    _("sla-reminder"),
    _("sla-breached"),
    _("email-sent"),
    _("email-bounced"),
    _("billing-failed"),
    _("policy-step"),
    _("payment-received"),
    _("credit-kept"),
    _("dispute-opened"),
    _("dispute-resolved"),
    _("fraud-reported"),
    _("promise-to-pay"),
    _("promise-lapsed"),
    _("resumed"),
    _("suspended"),
    _("reactivated"),
    _("partner-center-error"),
    _("settled"),
    _("linked"),
    _("suspension-asked"),
    _("suspension-approved"),
    _("suspension-refused"),
    _("notice-delivered"),
    _("contact-corrected"),
    _("hold-placed"),
    _("hold-released"),
    _("fraud-lifted"),
    _("policy-overridden"),
    _("21vianet-invoice-recorded"),
    _("21vianet-invoice-overdue"),
    _("21vianet-invoice-paid"),
    _("step-failed"),
    _("step-retried"),
    _("step-skipped"),
    _("needs-attention"),
    _("dispute-refused"),
    _("signal-refused"),
    # our emails, by template (core/models/email.py EmailTemplate)
    _("case_acknowledged"),
    _("info_requested"),
    _("customer_reminder"),
    _("case_escalated"),
    _("case_resolved"),
    _("case_reopened"),
    _("case_closed"),
    _("case_withdrawn"),
    _("case_reply"),
    _("owner_new_case"),
    _("owner_sla_reminder"),
    _("manager_sla_breach"),
    _("owner_file_escalation"),
    _("owner_escalation_reminder"),
    _("owner_customer_silent"),
    _("owner_email_bounced"),
    _("owner_case_update"),
    _("collections_payment_failed"),
    _("collections_reminder"),
    _("collections_final_notice"),
    _("collections_suspended"),
    _("collections_deletion_warning"),
    _("collections_payment_received"),
    _("collections_reactivated"),
    _("collections_fraud_suspended"),
    _("collections_promise_accepted"),
    _("collections_closed"),
    _("manager_collections_hand_off"),
    _("manager_partner_center_error"),
    _("manager_fraud_reported"),
    _("finance_vianet_invoice_due"),
    _("manager_vianet_invoice_overdue"),
    _("manager_needs_attention"),
)

LOCALE_DIR = Path(__file__).resolve().parent / "locale"
CATALOGS = {Locale.ZH_CN: LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po"}


@functools.cache
def translations(locale: Locale) -> NullTranslations:
    """The page texts in `locale`; en-US is the message ids themselves."""
    path = CATALOGS.get(locale)
    if path is None:
        return NullTranslations()
    with path.open("rb") as source:
        catalog = read_po(source, locale=locale.value.replace("-", "_"))
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled)


def best_locale(accept_language: str | None) -> Locale:
    """The person's browser's first choice of ours; zh-CN by default (the partner's staff)."""
    for item in (accept_language or "").split(","):
        tag = item.split(";")[0].strip().lower()
        if tag.startswith("en"):
            return Locale.EN_US
        if tag.startswith("zh"):
            return Locale.ZH_CN
    return Locale.ZH_CN
