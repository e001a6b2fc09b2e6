"""The sentences the workflows and the service write in English (a refusal, what a case or an
invoice waits for, its next deadline, a note the system put on its timeline), said in the page's
language. Each known shape is a pattern and a message id with the pattern's parts; the parts that
are codes (statuses, steps, actions) are translated too, moments are shown in China time. A
sentence of no known shape is shown as written (and the zh-CN walk, tests/test_l10n_browser.py,
fails on it)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from core.formatting import money
from web.i18n import _

Translate = Callable[[str], str]
When = Callable[[datetime], str]
ID = r"(?P<{}>\S+?)"


@dataclass(frozen=True)
class Phrase:
    pattern: re.Pattern[str]
    message: str  # a message id with the pattern's groups as %(name)s


def phrase(pattern: str, message: str) -> Phrase:
    return Phrase(re.compile(f"^{pattern}$", re.S), message)


# what the workflows' refusals name as the action they could not take (after "cannot")
ACTIONS = (
    _("assign"),
    _("add a note to"),
    _("change the contact of"),
    _("request information"),
    _("record a customer reply on"),
    _("resolve"),
    _("escalate"),
    _("record a 21Vianet ticket number on"),
    _("record a 21Vianet response on"),
    _("confirm"),
    _("reopen"),
    _("withdraw"),
    _("add a billing failure to"),
    _("record a payment on"),
    _("open a dispute on"),
    _("resume"),
    _("report fraud on"),
    _("record a promise to pay on"),
    _("waive"),
    _("correct the contact of"),
    _("approve the suspension of"),
    _("refuse the suspension of"),
    _("triage"),
)
AMOUNTS = ("amount", "disputed", "balance")
STATUS = r"(?P<status>[\w-]+)"
AT = r"(?P<at_utc>\d{4}-\d\d-\d\d \d\d:\d\d) UTC"
PHRASES = (
    # a case's refusals (workflows/billing_case/rules.py)
    phrase(
        rf"cannot (?P<action>.+?) case {ID.format('case')}: it is {STATUS} "
        r"\(needs (?P<wanted>.+)\)",
        _("Case %(case)s is %(status)s: it cannot %(action)s now (only when %(wanted)s)."),
    ),
    phrase(
        rf"cannot reply on case {ID.format('case')}: it is {STATUS}; the customer's next email "
        "opens a new case",
        _(
            "Case %(case)s is %(status)s: no reply can be sent on it. The customer's next email "
            "opens a new case."
        ),
    ),
    phrase(
        rf"cannot reopen case {ID.format('case')}: its reopen window ended at {AT} \(open a new "
        r"case\)",
        _(
            "Case %(case)s can no longer be reopened: its reopen window ended %(at_utc)s. Open a "
            "new case."
        ),
    ),
    phrase(
        rf"cannot (?P<action>.+?) case {ID.format('case')}: it is {STATUS}",
        _("Case %(case)s is %(status)s: it cannot %(action)s now."),
    ),
    phrase(
        rf"case {ID.format('case')} was escalated to 21Vianet (?P<times>\d+) times: a manager "
        "decides what happens next",
        _(
            "Case %(case)s was escalated to 21Vianet %(times)s times: a manager decides what "
            "happens next."
        ),
    ),
    phrase(
        rf"case {ID.format('case')} already has 21Vianet ticket (?P<ticket>.+)",
        _("Case %(case)s already has 21Vianet ticket %(ticket)s."),
    ),
    phrase(
        rf"case {ID.format('case')} has no 21Vianet ticket number yet: record it with "
        "vianet-ticket first",
        _("Case %(case)s has no 21Vianet ticket number yet: record it first."),
    ),
    phrase(
        rf"case {ID.format('case')} is escalated to 21Vianet \({STATUS}\): record 21Vianet's "
        "answer with vianet-response before resolving",
        _(
            "Case %(case)s is escalated to 21Vianet (%(status)s): record 21Vianet's answer "
            "before resolving it."
        ),
    ),
    phrase(
        r"credit_amount (?P<amount>\S+) exceeds the disputed amount (?P<disputed>\S+) "
        r"(?P<currency>[A-Z]{3})",
        _("The credit or refund amount %(amount)s is more than the disputed amount %(disputed)s."),
    ),
    phrase(
        rf"case {ID.format('case')} is (?P<owner>\S+)'s: a manager reassigns it",
        _("Case %(case)s is %(owner)s's: a manager reassigns it."),
    ),
    # an invoice's refusals (workflows/collections/rules.py)
    phrase(
        rf"cannot (?P<action>.+?) invoice {ID.format('invoice')}: collections is {STATUS}",
        _("Bill %(invoice)s is %(status)s in collections: it cannot %(action)s now."),
    ),
    phrase(
        rf"invoice {ID.format('invoice')} is already disputed in case (?P<case>\S+)",
        _("Bill %(invoice)s is already disputed in case %(case)s."),
    ),
    phrase(
        r"disputed_amount (?P<amount>\S+) exceeds the balance (?P<balance>\S+)",
        _("The disputed amount %(amount)s is more than the balance %(balance)s."),
    ),
    phrase(
        rf"invoice {ID.format('invoice')} is {STATUS}: only a paused policy resumes",
        _("Bill %(invoice)s is %(status)s: only a paused policy resumes."),
    ),
    phrase(
        rf"invoice {ID.format('invoice')} is {STATUS}: the suspension waits until the policy "
        "runs again",
        _("Bill %(invoice)s is %(status)s: the suspension waits until the policy runs again."),
    ),
    phrase(
        rf"fraud is already reported on invoice {ID.format('invoice')}",
        _("Fraud is already reported on bill %(invoice)s."),
    ),
    phrase(
        rf"invoice {ID.format('invoice')}: no suspension waits for a manager's approval",
        _("Bill %(invoice)s: no suspension waits for a manager's approval."),
    ),
    phrase(
        rf"invoice {ID.format('invoice')}: nothing waits for triage",
        _("Bill %(invoice)s: nothing waits for triage."),
    ),
    phrase(
        rf"invoice {ID.format('invoice')} is {STATUS}",
        _("Bill %(invoice)s is %(status)s."),
    ),
    phrase(r"until: must include a timezone", _("The date must include a timezone.")),
    phrase(
        r"until: must be in the next (?P<days>\d+) days",
        _("The promised date must be within the next %(days)s days."),
    ),
    phrase(
        rf"email: notices of invoice {ID.format('invoice')} go there already",
        _("The notices of bill %(invoice)s go to that address already."),
    ),
    # a 21Vianet invoice's (workflows/vianet_invoice/rules.py)
    phrase(
        r"21Vianet invoice (?P<invoice>\S+) is already marked paid \(reference (?P<ref>.+)\)",
        _("21Vianet bill %(invoice)s is already marked paid (reference %(ref)s)."),
    ),
    phrase(r"paid_at: (?P<at>\S+) is in the future", _("The payment date is in the future.")),
    # the service's (service/users.py, service/collections.py)
    phrase(
        r"(?P<field>\w+): (?P<who>\S+) is not an active agent or manager of the workspace",
        _("%(who)s is not an active agent or manager of the workspace: pick one from the list."),
    ),
    phrase(r"case_id: no case (?P<case>\S+)", _("There is no case %(case)s.")),
    # what is not found (service/calls.py Named, NotFound and Ended)
    phrase(r"no case (?P<case>\S+)(?: \(no workflow .*\))?", _("There is no case %(case)s.")),
    phrase(
        r"invoice (?P<invoice>\S+) is not in collections(?: \(no workflow .*\))?",
        _("Bill %(invoice)s is not in collections."),
    ),
    phrase(
        r"no 21Vianet invoice (?P<invoice>\S+) is recorded(?: \(no workflow .*\))?",
        _("No 21Vianet bill %(invoice)s is recorded."),
    ),
    phrase(
        r"21Vianet invoice (?P<invoice>\S+) is already marked paid",
        _("21Vianet bill %(invoice)s is already marked paid."),
    ),
    phrase(r"no queue '(?P<queue>[^']*)'", _("There is no such queue.")),
    # what a case waits for (workflows/billing_case/views.py)
    phrase(r"the agent: first response", _("the agent's first response")),
    phrase(r"the agent: resolution", _("the agent to resolve the case")),
    phrase(
        r"the customer: reply to the information request",
        _("the customer's reply to the information request"),
    ),
    phrase(
        r"the agent: file the request in the 21Vianet portal, record the ticket number",
        _("the agent to file the request in the 21Vianet portal and record the ticket number"),
    ),
    phrase(
        r"21Vianet: answer to ticket (?P<ticket>.+)", _("21Vianet's answer to ticket %(ticket)s")
    ),
    phrase(
        r"the resolution email to reach the customer",
        _("the resolution email to reach the customer"),
    ),
    phrase(r"the customer: confirm or reopen", _("the customer to confirm or reopen")),
    phrase(r"nothing \(case ended\)", _("nothing (the case has ended)")),
    # what an invoice waits for (workflows/collections/rules.py)
    phrase(
        r"a manager to approve or refuse the suspension \(asked (?P<asked>[\d-]+)\)",
        _("a manager to approve or refuse the suspension (asked %(asked)s)"),
    ),
    phrase(r"payment \(policy finished\)", _("payment (the policy has run its course)")),
    phrase(
        rf"payment; next step (?P<step>\S+) on {AT}",
        _("payment; next step: %(step)s, %(at_utc)s"),
    ),
    phrase(
        r"the dispute case (?P<case>\S+) \(policy paused\)",
        _("the dispute case %(case)s (policy paused)"),
    ),
    phrase(rf"the promised payment by {AT}", _("the promised payment by %(at_utc)s")),
    phrase(r"payment", _("payment")),
    phrase(
        r"a manager \(handed off\); closes (?P<closes>[\d-]+)",
        _("a manager (handed off); closes %(closes)s"),
    ),
    phrase(r"a manager \(handed off\)", _("a manager (handed off)")),
    phrase(r"nothing \(collections ended\)", _("nothing (collections has ended)")),
    # what needs a person (workflows/base.py _attention_line, the rules' Flag effects)
    phrase(
        r"NEEDS ATTENTION: (?P<step>\S+) failed: (?P<error>.*) \(retry-step after a fix, or "
        r"skip-step --reason\)",
        _("Step %(step)s failed: %(error)s. Retry it after a fix, or skip it with a reason."),
    ),
    phrase(r"NEEDS ATTENTION: (?P<why>.*)", _("Needs attention: %(why)s")),
    phrase(
        r"invoice (?P<invoice>\S+) is due for suspension: approve it \(approve-suspension "
        r"--reason\) or refuse it \(refuse-suspension --reason\)",
        _("Bill %(invoice)s is due for suspension: a manager approves or refuses it."),
    ),
    phrase(
        r"the final notice was not delivered: correct the contact \(collections-contact\) or "
        r"confirm it \(triage --decision contact-confirmed\)",
        _("The final notice was not delivered: correct the contact, or confirm it."),
    ),
    phrase(
        r"21Vianet request #(?P<n>\d+) is still not filed after (?P<times>\d+) reminders to the "
        r"owner: file it in the portal and record the ticket number \(vianet-ticket\), or "
        r"reassign the case",
        _(
            "21Vianet request #%(n)s is still not filed after %(times)s reminders to the owner: "
            "file it in the portal and record the ticket number, or reassign the case."
        ),
    ),
    phrase(
        r"21Vianet has not answered ticket (?P<ticket>\S*) after (?P<times>\d+) follow-ups: "
        r"escalate with 21Vianet, or record its answer \(vianet-response\)",
        _(
            "21Vianet has not answered ticket %(ticket)s after %(times)s follow-ups: escalate "
            "with 21Vianet, or record its answer."
        ),
    ),
    # the notes inbound mail writes on a case (service/inbound.py)
    phrase(
        r"attachments of the customer's email:\n(?P<files>.*)",
        _("Attachments of the customer's email:\n%(files)s"),
    ),
    phrase(
        r"email failing its sender checks \((?P<checks>[^)]*)\), from (?P<sender>\S+): "
        r"(?P<text>.*)",
        _("An email that failed its sender checks (%(checks)s), from %(sender)s: %(text)s"),
    ),
    phrase(
        r"email from another sender \((?P<sender>[^)]*)\): (?P<text>.*)",
        _("An email from another sender (%(sender)s): %(text)s"),
    ),
    phrase(r"customer email: (?P<text>.*)", _("The customer's email: %(text)s")),
    phrase(
        r"follow-up of case (?P<case>\S+), which had ended",
        _("A follow-up of case %(case)s, which had ended"),
    ),
    # what a case or an invoice records of its own accord (workflows/*/rules.py)
    phrase(r"case closed", _("The case is closed.")),
    phrase(r"customer confirmed the resolution", _("The customer confirmed the resolution.")),
    phrase(r"reopen window ended without a reopen", _("The reopen window ended without a reopen.")),
    phrase(r"resolution sent to the customer", _("The resolution was sent to the customer.")),
    phrase(r"Reopened: (?P<reason>.*)", _("Reopened: %(reason)s")),
    phrase(r"assigned to (?P<who>\S+)", _("Assigned to %(who)s")),
    phrase(
        r"customer contact changed to (?P<email>\S+)", _("The customer's contact is now %(email)s")
    ),
    phrase(r"(?P<clock>\w+) SLA breached", _("SLA %(clock)s breached")),
    phrase(r"(?P<clock>\w+) SLA reminder", _("SLA %(clock)s reminder")),
    phrase(
        r"(?P<template>\w+) was not delivered \((?P<event>[\w-]+)\)",
        _("The email %(template)s was not delivered (%(event)s)"),
    ),
    phrase(r"a manager decides", _("A manager decides.")),
    phrase(
        r"a notice was not delivered: confirm the customer's contact",
        _("A notice was not delivered: confirm the customer's contact."),
    ),
    phrase(
        r"handed off and closed without payment",
        _("Handed off and closed without payment."),
    ),
    phrase(r"no payment by the promised date", _("No payment by the promised date.")),
    phrase(
        r"the customer replied to a notice: triage it \(dispute, promise or no action\)",
        _("The customer replied to a notice: triage it (dispute, promise or no action)."),
    ),
    phrase(r"notices go to (?P<email>\S+)", _("Notices now go to %(email)s")),
    phrase(r"until (?P<at_iso>\d{4}-\d\d-\d\dT\S+)", _("Promised by %(at_iso)s")),
    phrase(r"waived: (?P<reason>.*)", _("Waived: %(reason)s")),
    phrase(r"resumed by (?P<who>\S+): (?P<reason>.*)", _("Resumed by %(who)s: %(reason)s")),
    phrase(
        r"triage: (?P<decision>[\w-]+) \((?P<what>[\w-]+)\)",
        _("Triaged: %(decision)s (%(what)s)"),
    ),
    # a case's next deadline (workflows/billing_case/rules.py, timers)
    phrase(r"SLA: (?P<clock>\w+) reminder", _("SLA %(clock)s: reminder")),
    phrase(r"SLA: (?P<clock>\w+) due", _("SLA %(clock)s: due")),
    phrase(r"Customer silent: reminder (?P<n>\d+)", _("Customer silent: reminder %(n)s")),
    phrase(r"Customer silent: tell the owner", _("Customer silent: tell the owner")),
    phrase(r"21Vianet: ticket number missing", _("21Vianet: ticket number missing")),
    phrase(r"21Vianet: follow up", _("21Vianet: follow up")),
    phrase(r"21Vianet: response target", _("21Vianet: response target")),
    phrase(r"Resolution: no bounce", _("Resolution: no bounce")),
    phrase(r"Reopen window ends", _("Reopen window ends")),
)


def said(text: str, gettext: Translate, when: When) -> str:
    """`text` in the page's language when it has a known shape or is a code the catalog has;
    as written otherwise."""
    for known in PHRASES:
        found = known.pattern.match(text.strip())
        if found is None:
            continue
        groups = found.groupdict()
        currency = groups.get("currency") or "CNY"
        parts = {
            name: _part(name, value, gettext, when, currency) for name, value in groups.items()
        }
        return gettext(known.message) % parts
    return gettext(text)  # a code of its own (an email-sent event's template), or as written


def _part(name: str, value: str, gettext: Translate, when: When, currency: str) -> str:
    if name in AMOUNTS:
        try:
            return money(Decimal(value), currency)
        except (InvalidOperation, ValueError):
            return value
    if name == "at_utc":
        return when(datetime.strptime(value, "%Y-%m-%d %H:%M").replace(tzinfo=UTC))
    if name == "why":  # a sentence of its own
        return said(value, gettext, when)
    if name == "at_iso":
        try:
            return when(datetime.fromisoformat(value))
        except ValueError:
            return value
    if name == "wanted":
        return gettext(" or ").join(gettext(one) for one in value.split(" or "))
    if name in ("action", "status", "step", "clock", "template", "event", "decision", "what"):
        return gettext(value)
    return value


__all__ = ["ACTIONS", "PHRASES", "said"]
