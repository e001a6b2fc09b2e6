"""What an email activity takes and answers, and what SendGrid tells of an email: the message
carries the view its email is about."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import EmailStr, StringConstraints, model_validator

from core import ids
from core.models.account import AccountView
from core.models.case import CaseView
from core.models.collections import CollectionsView
from core.models.email import AnyEmailData
from core.models.email_data import About, EmailTemplate
from core.models.shared import Locale, Strict
from core.models.vianet_invoice import VianetInvoiceView


class EmailMessage(Strict):
    """One email, sent at most once per ``key``: its data and the view it is about."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    to: EmailStr
    locale: Locale
    data: AnyEmailData
    case: CaseView | None = None
    collections: CollectionsView | None = None
    vianet_invoice: VianetInvoiceView | None = None
    account: AccountView | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_extra(cls, value: Any) -> Any:
        """An activity scheduled before the data was typed carried ``template`` and ``extra``."""
        if isinstance(value, dict) and "template" in value and "data" not in value:
            value = dict(value)
            template = EmailTemplate(value.pop("template"))
            extra = value.pop("extra", None) or {}
            fields = template.data.model_fields.keys() | template.data.retired
            known = {name: text for name, text in extra.items() if name in fields}
            value["data"] = {"template": template, **known}
        return value

    @model_validator(mode="after")
    def _one_subject(self) -> EmailMessage:
        about = {
            About.CASE: self.case,
            About.COLLECTIONS: self.collections,
            About.VIANET_INVOICE: self.vianet_invoice,
            About.ACCOUNT: self.account,
        }
        given = [name for name, view in about.items() if view is not None]
        wanted = self.data.about
        if len(given) != 1 or (wanted is not None and given != [wanted]):
            one = wanted.value if wanted else "case, collections, 21Vianet invoice or account"
            raise ValueError(
                f"email {self.template.value} is about one {one}, "
                f"given {', '.join(given) or 'nothing'}"
            )
        return self

    @property
    def template(self) -> EmailTemplate:
        return EmailTemplate(self.data.template)

    @property
    def subject_id(self) -> str:
        """The case id, the invoice id for collections, the 21Vianet invoice number: what the
        email log files it under."""
        if self.case is not None:
            return self.case.case_id
        if self.vianet_invoice is not None:
            return self.vianet_invoice.invoice_number
        if self.account is not None:
            return self.account.tenant_id
        assert self.collections is not None
        return self.collections.invoice_id

    @property
    def workflow_id(self) -> str:
        """The workflow whose email this is: its thread, and where its delivery events go."""
        if self.case is not None:
            return ids.case_workflow_id(self.case.case_id)
        if self.vianet_invoice is not None:
            return ids.vianet_invoice_workflow_id(self.vianet_invoice.invoice_number)
        if self.account is not None:
            return ids.account_workflow_id(self.account.tenant_id)
        assert self.collections is not None
        return ids.collections_workflow_id(self.collections.invoice_id)


class EmailUndelivered(Strict):
    """SendGrid's Event Webhook: an email it had accepted bounced, or was dropped or blocked."""

    key: Annotated[str, StringConstraints(max_length=255)]
    event: Literal["bounce", "dropped", "blocked"]
    address: Annotated[str, StringConstraints(max_length=320)]
    template: Annotated[str, StringConstraints(max_length=64)]
    reason: Annotated[str, StringConstraints(max_length=500)] = ""


class EmailDelivered(Strict):
    """SendGrid's Event Webhook: an email it had accepted reached the customer's mail server."""

    key: Annotated[str, StringConstraints(max_length=255)]
    template: Annotated[str, StringConstraints(max_length=64)]


class EmailSent(Strict):
    key: str
    provider_message_id: str
    duplicate: bool = False  # True when the key had already been sent: nothing went out again
