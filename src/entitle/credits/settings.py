"""Per-customer credit settings. Auto-recharge needs paid grants charged through the billing provider,
which is not built: it is reported as not enabled, truthfully, with the contract's defaults."""

from __future__ import annotations

from entitle.credits import store
from entitle.credits.schemas import AutoRechargeOut
from entitle.customers import store as customers
from entitle.db import Database


def auto_recharge(db: Database, env_id: int, customer_ref: str, currency_ref: str) -> AutoRechargeOut:
    with db.read() as s:
        customer = customers.get_live(s, env_id, customer_ref)
        currency = store.get_currency(s, env_id, currency_ref)
        return AutoRechargeOut(customer_id=customer.ref_id, currency_id=currency.ref_id, is_enabled=False)
