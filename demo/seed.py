"""`make demo`'s partner: a dozen customers, cases in every state, invoices at every stage of the
demo's collections policy (config/collections_policy.demo.toml: a policy day is a minute), the
staff's local accounts, canned replies and unknown senders' emails in the inbox.

Everything goes through the service, as the workspace and the CLI do, so every case, invoice and
email is the real thing on the real worker. An invoice meant to be seen later in its policy gets a
head start: its policy as if it had failed that many days ago, so the steps due by then are taken
at once (its timeline shows each), and a manager approves what needed approval."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr, formatdate, make_msgid

from pydantic import SecretStr

from core.macros import MacroForm
from core.models import (
    BillingFailure,
    CaseForm,
    CasePolicy,
    CollectionsPolicy,
    CollectionsView,
    Customer,
    Locale,
    StepAnchor,
)
from core.models.case import CaseStatus, Category, Outcome
from core.models.case_actions import (
    AddNote,
    Confirm,
    Escalate,
    Reply,
    RequestInfo,
    Resolve,
    VianetTicket,
    Withdraw,
)
from core.models.case_policy import Priority, Severity
from core.models.collections_actions import OpenDispute, PaymentReceived, PromiseToPay, Waive
from service import Service
from service.cases import CaseAction
from service.collections import Approve
from service.users import NewUser, Role

PASSWORD = "demo-password-2026"  # every demo account's: on loopback, for a demo's data only
AGENT = "agent.wang@partner.example.cn"
OTHER_AGENT = "agent.li@partner.example.cn"
MANAGER = "manager.zhao@partner.example.cn"
FINANCE = "finance.qian@partner.example.cn"
ADMIN = "admin.sun@partner.example.cn"
STAFF: dict[str, tuple[str, list[Role], Locale]] = {
    AGENT: ("王客服", [Role.AGENT], Locale.ZH_CN),
    OTHER_AGENT: ("李客服", [Role.AGENT], Locale.ZH_CN),
    MANAGER: ("赵经理", [Role.MANAGER], Locale.ZH_CN),
    FINANCE: ("钱财务", [Role.FINANCE], Locale.ZH_CN),
    ADMIN: ("孙管理员", [Role.ADMIN], Locale.ZH_CN),
}
# a seeded invoice reaches its stage within this (the worker runs its steps at once)
STAGE_WAIT = 120.0
_IDS = uuid.UUID("6f0e1c52-9a3b-4d7e-8c21-5b4a3f2e1d0c")  # the demo's ids are the same each run


@dataclass(frozen=True)
class DemoCustomer:
    name: str
    email: str
    locale: Locale = Locale.ZH_CN

    @property
    def tenant_id(self) -> str:
        return str(uuid.uuid5(_IDS, self.name))

    @property
    def subscription_id(self) -> str:
        return str(uuid.uuid5(_IDS, f"{self.name}/subscription"))

    @property
    def customer(self) -> Customer:
        return Customer(
            tenant_id=self.tenant_id, name=self.name, email=self.email, locale=self.locale
        )


CUSTOMERS = [
    DemoCustomer("上海云帆信息科技有限公司", "finance@yunfan.example.cn"),
    DemoCustomer("北京星河数据服务有限公司", "ap@xinghe-data.example.cn"),
    DemoCustomer("深圳鹏程智能制造有限公司", "caiwu@pengcheng-mfg.example.cn"),
    DemoCustomer("杭州西溪电子商务有限公司", "billing@xixi-shop.example.cn"),
    DemoCustomer("成都锦城游戏科技有限公司", "finance@jincheng-games.example.cn"),
    DemoCustomer("广州南沙物流有限公司", "zhangdan@nansha-logistics.example.cn"),
    DemoCustomer("苏州博远医疗器械有限公司", "finance@boyuan-med.example.cn"),
    DemoCustomer("武汉光谷生物信息有限公司", "caiwu@optics-valley-bio.example.cn"),
    DemoCustomer("南京紫金教育科技有限公司", "billing@zijin-edu.example.cn"),
    DemoCustomer("天津滨海新能源有限公司", "finance@binhai-energy.example.cn"),
    DemoCustomer(
        "Harbour Analytics (Shanghai) Co., Ltd.", "ap@harbour-analytics.example.com", Locale.EN_US
    ),
    DemoCustomer("西安古城文旅集团有限公司", "caiwu@gucheng-travel.example.cn"),
]


@dataclass(frozen=True)
class DemoCase:
    """A case and the actions that bring it to its state, taken in order by `by`."""

    customer: DemoCustomer
    category: Category
    priority: Priority
    description: str
    owner: str | None
    actions: tuple[CaseAction, ...] = ()
    amount: Decimal = Decimal("0.00")
    invoice_id: str | None = None


def _cases() -> list[DemoCase]:
    c = CUSTOMERS
    ask = RequestInfo(
        question="请提供九月删除虚拟机的操作记录截图，以便我们核对计量数据。", by=AGENT
    )
    explained = Resolve(
        outcome=Outcome.EXPLAINED,
        summary="本月费用较高是因为 11 月 1 日起按新的预留实例价格计费，详见附件中的价格对照。",
        by=AGENT,
    )
    escalate = Escalate(
        reason="计量数据显示 9 月 28 日后仍有用量，需世纪互联核实计量记录。",
        severity=Severity.B,
        by=AGENT,
    )
    return [
        DemoCase(
            c[0],
            Category.BILLING_QUESTION,
            Priority.NORMAL,
            "请问为什么本月发票比上月高了三成？我们的用量没有明显变化。",
            None,
        ),
        DemoCase(
            c[1],
            Category.UNEXPECTED_CHARGE,
            Priority.HIGH,
            "账单里出现了一笔我们没有开通过的“Azure 备份”费用，共 ¥3,280.00。",
            AGENT,
            (
                AddNote(
                    text="订阅活动日志显示 11 月 3 日有人开启了备份保管库，待客户确认。", by=AGENT
                ),
                Reply(text="您好，我们正在核对这笔备份费用，今天下班前给您答复。", by=AGENT),
            ),
            Decimal("3280.00"),
            "G202611002",
        ),
        DemoCase(
            c[2],
            Category.INVOICE_DISPUTE,
            Priority.HIGH,
            "十月发票包含一台九月已删除的虚拟机的费用。",
            AGENT,
            (ask,),
            Decimal("12340.00"),
            "G202610003",
        ),
        DemoCase(
            c[3],
            Category.INVOICE_DISPUTE,
            Priority.NORMAL,
            "存储用量在 9 月 28 日之后应为零，但账单仍计费 ¥2,000.00。",
            AGENT,
            (escalate,),
            Decimal("2000.00"),
            "G202610004",
        ),
        DemoCase(
            c[4],
            Category.CREDIT_NOTE,
            Priority.URGENT,
            "服务中断 6 小时，请按 SLA 提供服务抵扣。",
            OTHER_AGENT,
            (escalate, VianetTicket(ticket_number="2611240042", by=OTHER_AGENT)),
            Decimal("8600.00"),
            "G202610005",
        ),
        DemoCase(
            c[6],
            Category.BILLING_QUESTION,
            Priority.LOW,
            "发票抬头需要改为新的公司全称，可以重开吗？",
            AGENT,
            (explained,),
        ),
        DemoCase(
            c[7],
            Category.PAYMENT,
            Priority.NORMAL,
            "我们上周已经通过银行转账付款，为什么系统仍显示未付？",
            OTHER_AGENT,
            (
                Resolve(
                    outcome=Outcome.EXPLAINED,
                    summary="款项已于今日到账并核销，账户状态已恢复正常。",
                    by=OTHER_AGENT,
                ),
                Confirm(),
            ),
        ),
        DemoCase(
            c[8],
            Category.SUBSCRIPTION_CHANGE,
            Priority.LOW,
            "想把两个订阅合并到一个账单，是否可行？",
            AGENT,
            (Withdraw(reason="客户来电表示暂不调整，撤回咨询。", by=AGENT),),
        ),
        DemoCase(
            c[10],
            Category.REFUND_REQUEST,
            Priority.NORMAL,
            "We were charged twice for the November reserved instance. Please refund one.",
            OTHER_AGENT,
            (ask.model_copy(update={"question": "Could you send the two bank references?"}),),
            Decimal("15600.00"),
            "G202611011",
        ),
    ]


@dataclass(frozen=True)
class DemoInvoice:
    """An unpaid invoice: the policy days it starts into its policy, and what then happens."""

    customer: DemoCustomer
    invoice_id: str
    amount: Decimal
    head_start: int = 0
    approve: bool = False  # a manager approved its suspension when it was asked
    then: str = ""  # "pay", "waive", "dispute", "promise"
    stage: str = ""  # the stage it is seen at once seeded


def _invoices() -> list[DemoInvoice]:
    c = CUSTOMERS
    return [
        DemoInvoice(c[0], "G202611101", Decimal("12340.50"), stage="payment-failed"),
        DemoInvoice(c[1], "G202611102", Decimal("4860.00"), 3, stage="reminder"),
        DemoInvoice(c[2], "G202611103", Decimal("28800.00"), 7, stage="final-notice"),
        DemoInvoice(c[3], "G202611104", Decimal("9520.00"), 10, stage="awaiting-approval"),
        DemoInvoice(c[4], "G202611105", Decimal("36150.80"), 10, True, stage="suspension"),
        DemoInvoice(c[5], "G202611106", Decimal("6400.00"), 50, True, stage="deletion-warning"),
        DemoInvoice(c[6], "G202611107", Decimal("18000.00"), 95, True, stage="handed-off"),
        DemoInvoice(c[7], "G202611108", Decimal("7300.00"), then="pay", stage="paid"),
        DemoInvoice(c[8], "G202611109", Decimal("2150.00"), then="waive", stage="waived"),
        DemoInvoice(
            c[9], "G202611110", Decimal("56800.00"), then="dispute", stage="paused-dispute"
        ),
        DemoInvoice(
            c[10], "G202611111", Decimal("15600.00"), then="promise", stage="paused-promise"
        ),
        DemoInvoice(c[11], "G202611112", Decimal("3900.00"), 3, stage="reminder"),
    ]


CASES = _cases()
INVOICES = _invoices()
# what the tour points at: approve now, pay the suspended one, watch one ask in a few minutes
APPROVE_NOW = "G202611104"
PAY_TO_REACTIVATE = "G202611105"
ASKS_SOON = "G202611103"

MACROS = [
    MacroForm(
        name="已收到，正在核对",
        locale=Locale.ZH_CN,
        text="{customer_name}您好：\n\n工单 {case_id} 已收到，我们正在核对账单 {invoice_number}"
        "（{amount}），将在一个工作日内回复您。\n\n{agent_name}",
    ),
    MacroForm(
        name="付款方式",
        locale=Locale.ZH_CN,
        text="{customer_name}您好：\n\n账单 {invoice_number} 可通过银行转账支付，请在转账附言中注明"
        "账单编号。到账后我们会第一时间恢复服务。\n\n{agent_name}",
    ),
    MacroForm(
        name="Received, checking",
        locale=Locale.EN_US,
        text="Dear {customer_name},\n\nWe received case {case_id} and are checking invoice "
        "{invoice_number} ({amount}); we will answer within one working day.\n\n{agent_name}",
    ),
]

STRANGERS = [
    (
        "张伟",
        "zhang.wei@unknown.example.cn",
        "关于合同续签",
        "您好，我们明年想续签三年，请问价格？",
    ),
    ("陈静", "chen.jing@newco.example.cn", "开票信息变更", "我司地址变更，请问开票信息如何修改？"),
]


class DemoError(RuntimeError):
    """The demo could not be seeded; the message says why."""


@dataclass
class Seeded:
    customers: int = 0
    staff: list[str] = field(default_factory=list)
    cases: Counter[str] = field(default_factory=Counter)  # by status
    case_ids: list[str] = field(default_factory=list)  # in CASES' order
    invoices: Counter[str] = field(default_factory=Counter)  # by stage
    inbox: int = 0
    macros: int = 0


def head_start(policy: CollectionsPolicy, days: int) -> CollectionsPolicy:
    """`policy` as if its invoice had failed `days` policy days ago: each step is due that many
    days sooner (at once, if it was due by then), and the data's deletion too."""
    suspension = policy.suspension_day or 0
    past_suspension = max(days - suspension, 0)

    def sooner(day: int, anchor: StepAnchor) -> int:
        return max(day - (days if anchor is StepAnchor.FAILURE else past_suspension), 0)

    steps = [{**s.model_dump(), "day": sooner(s.day, s.after)} for s in policy.steps]
    deletion = max(
        policy.data_deletion_after - past_suspension * policy.day_length, policy.day_length
    )
    return CollectionsPolicy.model_validate(
        {**policy.model_dump(), "steps": steps, "data_deletion_after": deletion}
    )


def stranger_letter(name: str, sender: str, subject: str, text: str, to: str) -> bytes:
    """An email from someone no case or invoice knows, as a mail client sends it."""
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((name, sender))
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.split("@")[1])
    message.set_content(text)
    return message.as_bytes()


async def eventually(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = asyncio.get_running_loop().time() + STAGE_WAIT
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise DemoError(f"{what} did not happen within {STAGE_WAIT:.0f} s: is the worker up?")
        await asyncio.sleep(0.5)  # each look is a query the worker answers beside the steps


async def seed(service: Service, *, now: datetime | None = None) -> Seeded:
    """Seed an empty demo database: DemoError if it has local accounts already."""
    if await service.users.accounts():
        raise DemoError("the database has local accounts already: `make demo` seeds a fresh one")
    now = now or datetime.now(UTC)
    seeded = Seeded(customers=len(CUSTOMERS))
    # all at once: the worker takes every workflow's steps side by side
    staff, macros, invoices, cases = await asyncio.gather(
        asyncio.gather(*(_person(service, email) for email in STAFF)),
        asyncio.gather(*(service.macros.add(macro, MANAGER) for macro in MACROS)),
        asyncio.gather(*(_invoice(service, invoice, now) for invoice in INVOICES)),
        asyncio.gather(*(_case(service, case) for case in CASES)),
    )
    seeded.staff, seeded.macros = list(staff), len(macros)
    seeded.invoices.update(view.stage for view in invoices)
    seeded.case_ids = [case_id for case_id, _ in cases]
    seeded.cases.update(status for _, status in cases)
    for name, sender, subject, text in STRANGERS:
        letter = stranger_letter(name, sender, subject, text, service.settings.email_from)
        await service.inbound.receive(letter)
        seeded.inbox += 1
    return seeded


async def _person(service: Service, email: str) -> str:
    name, roles, locale = STAFF[email]
    password = SecretStr(PASSWORD)
    await service.users.add(
        NewUser(email=email, name=name, roles=roles, locale=locale, password=password)
    )
    return email


async def _case(service: Service, case: DemoCase) -> tuple[str, str]:
    """The case opened and brought to its state: its id and status."""
    form = CaseForm(
        tenant_id=case.customer.tenant_id,
        name=case.customer.name,
        email=case.customer.email,
        locale=case.customer.locale,
        category=case.category,
        description=case.description,
        subscription_id=case.customer.subscription_id,
        invoice_id=case.invoice_id,
        amount=case.amount,
        priority=case.priority,
        owner=case.owner,
        opened_by=case.owner or "portal (API)",
    )
    opened = await service.cases.open(service.cases.prepare(form))
    status = CaseStatus.OPEN
    for number, action in enumerate(case.actions):
        if isinstance(action, Reply):  # a public reply is the thread's next email, sent once
            view = await service.replies.send(opened.case_id, action, [], key=f"demo-{number}")
        else:
            view = await service.cases.act(opened.case_id, action)
        status = view.status
    return opened.case_id, status.value


async def _invoice(service: Service, invoice: DemoInvoice, now: datetime) -> CollectionsView:
    policy, case_policy = service.collections.policies()
    failure = BillingFailure(
        failure_id=f"BF-{invoice.invoice_id}",
        invoice_id=invoice.invoice_id,
        customer=invoice.customer.customer,
        subscription_ids=[invoice.customer.subscription_id],
        amount_due=invoice.amount,
        failed_at=now - invoice.head_start * policy.day_length,
        reason="insufficient funds",
    )
    policies: tuple[CollectionsPolicy, CasePolicy] = (
        head_start(policy, invoice.head_start),
        case_policy,
    )
    # the timeline says why the steps due by then were all taken at once
    started_sooner = (
        f"演示数据：按 {invoice.head_start} 个策略日前的付款失败开始，此前到期的步骤立即执行"
    )
    await service.collections.start(
        failure, policies, started_sooner if invoice.head_start else None
    )
    invoice_id = invoice.invoice_id
    if invoice.approve:
        await _reach(service, invoice_id, "awaiting-approval")
        reason = "客户多次催缴未付，按政策暂停。"
        await service.collections.act(invoice_id, Approve(reason=reason, by=MANAGER))
    await _reach(service, invoice_id, "payment-failed" if invoice.then else invoice.stage)
    match invoice.then:
        case "pay":
            payment = PaymentReceived(
                payment_id=f"PAY-{invoice_id}",
                invoice_id=invoice_id,
                amount=invoice.amount,
                received_at=now,
                by=FINANCE,
            )
            await service.collections.act(invoice_id, payment)
        case "waive":
            waive = Waive(reason="长期合作客户，小额尾款经批准豁免。", by=MANAGER)
            await service.collections.act(invoice_id, waive)
        case "dispute":
            text = "客户认为本月预留实例费用重复计费，暂停催收待核实。"
            await service.collections.act(invoice_id, OpenDispute(description=text, by=AGENT))
        case "promise":
            promise = PromiseToPay(until=now + timedelta(days=7), by=AGENT)
            await service.collections.act(invoice_id, promise)
    return await _reach(service, invoice_id, invoice.stage)


async def _reach(service: Service, invoice_id: str, stage: str) -> CollectionsView:
    """The invoice once its workflow shows `stage`."""
    seen: list[CollectionsView] = []

    async def there() -> bool:
        seen.append(await service.collections.show(invoice_id))
        return seen[-1].stage == stage

    await eventually(f"invoice {invoice_id} reaching {stage}", there)
    return seen[-1]
