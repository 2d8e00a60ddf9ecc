"""Pure rules of the console's catalog editors: the draft-beside-published comparison, one line per
entitlement and price, and the editors' text fields (tiers, amounts off per currency)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entitle.catalog.packages.models import Package, PackageCharge, PackageEntitlement
from entitle.console.catalog_rules import (
    amounts_off_of,
    charge_key,
    charge_line,
    differences,
    entitlement_line,
    one_charge_editable,
    setting_lines,
    tiers_of,
)
from entitle.errors import InvalidArgument

keys = st.text(alphabet="abcdef-", min_size=1, max_size=4)
lines = st.dictionaries(keys, st.sampled_from(["up to 1", "up to 2", "unlimited"]), max_size=6)
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)


@given(lines, lines)
def test_every_key_of_either_version_appears_once_with_what_happened_to_it(
    published: dict[str, str], draft: dict[str, str]
) -> None:
    found = differences(published, draft)
    assert [d.key for d in found] == list(published) + [k for k in draft if k not in published]
    for d in found:
        assert (d.published, d.draft) == (published.get(d.key), draft.get(d.key))
        expected = (
            "added"
            if d.key not in published
            else "removed"
            if d.key not in draft
            else "unchanged"
            if published[d.key] == draft[d.key]
            else "changed"
        )
        assert d.change == expected


@given(lines)
def test_a_draft_just_copied_changes_nothing(published: dict[str, str]) -> None:
    assert all(d.change == "unchanged" for d in differences(published, dict(published)))


@given(st.lists(st.tuples(amounts, st.none() | amounts), min_size=1, max_size=5), st.booleans())
def test_the_tier_editor_reads_back_what_it_shows(rows: list[tuple[Decimal, Decimal | None]], open_ended: bool) -> None:
    text = "\n".join(
        f"{'*' if open_ended and i == len(rows) - 1 else (i + 1) * 10} {unit}"
        + (f" {flat}" if flat is not None else "")
        for i, (unit, flat) in enumerate(rows)
    )
    tiers = tiers_of(text, "eur")
    assert len(tiers) == len(rows)
    for i, ((unit, flat), tier) in enumerate(zip(rows, tiers, strict=True)):
        assert tier["up_to"] == (None if open_ended and i == len(rows) - 1 else Decimal((i + 1) * 10))
        assert tier["unit_price"] == {"amount": unit, "currency": "eur"}
        assert tier.get("flat_price") == ({"amount": flat, "currency": "eur"} if flat is not None else None)


@pytest.mark.parametrize(
    ("text", "problem"), [("10", "tier line 1"), ("10 1 2 3", "tier line 1"), ("5 1\nx 2", "tier line 2")]
)
def test_a_tier_line_that_does_not_read_is_refused_with_its_number(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        tiers_of(text, "usd")


@given(st.lists(st.tuples(amounts, st.sampled_from(["usd", "EUR", "jpy"])), max_size=4), st.booleans())
def test_amounts_off_read_one_per_line_or_comma_either_way_round(rows: list[tuple[Decimal, str]], commas: bool) -> None:
    written = [f"{a} {c}" if i % 2 == 0 else f"{c} {a}" for i, (a, c) in enumerate(rows)]
    found = amounts_off_of((", " if commas else "\n").join(written))
    assert found == [{"amount": str(a), "currency": c.lower()} for a, c in rows]


def test_an_amount_off_without_its_currency_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="amount off 2"):
        amounts_off_of("10 usd\n5")


def test_prices_and_entitlements_read_as_one_line_each() -> None:
    tiered = PackageCharge(
        is_overage=False,
        billing_model="PER_UNIT",
        billing_period="MONTHLY",
        billing_country_code="de",
        feature_ref="seats",
        tiers=[
            {"upTo": "10", "unitPrice": {"amount": "5.00", "currency": "eur"}},
            {
                "upTo": None,
                "unitPrice": {"amount": "4", "currency": "eur"},
                "flatPrice": {"amount": "1.5", "currency": "eur"},
            },
        ],
        tiers_mode="GRADUATED",
        max_unit_quantity=20,
    )
    assert charge_key(tiered) == "PER_UNIT seats MONTHLY DE"
    assert (
        charge_line(tiered) == "graduated tiers: up to 10 at 5 EUR; beyond at 4 EUR + 1.5 EUR flat (quantity 0 to 20)"
    )
    overage = PackageCharge(
        is_overage=True,
        billing_model="USAGE_BASED",
        billing_period="MONTHLY",
        feature_ref="calls",
        price_amount=Decimal("0.010"),
        price_currency="usd",
        block_size=Decimal(100),
    )
    assert (charge_key(overage), charge_line(overage)) == ("overage calls MONTHLY", "0.01 USD per block of 100")
    limited = PackageEntitlement(
        entitlement_type="FEATURE",
        ref_id="calls",
        is_granted=True,
        usage_limit=Decimal(1000),
        has_soft_limit=True,
        reset_period="MONTH",
        display_name_override="Requests",
        hidden_from_widgets=["PAYWALL", "CHECKOUT"],
        order=Decimal(2),
    )
    assert entitlement_line(limited) == (
        'up to 1000 (soft limit); resets every month; shown as "Requests"; hidden from checkout, paywall; position 2'
    )
    withheld = PackageEntitlement(entitlement_type="FEATURE", ref_id="sso", is_granted=False, hidden_from_widgets=[])
    assert entitlement_line(withheld) == "withheld"


def test_a_versions_settings_read_as_one_line_each() -> None:
    plan = Package(
        kind="PLAN",
        pricing_type="PAID",
        parent_plan_ref="free",
        compatible_addon_ids=["b", "a"],
        default_trial_config={"duration": "1", "units": "MONTH", "trialEndBehavior": "CANCEL_SUBSCRIPTION"},
    )
    assert setting_lines(plan) == {
        "pricing": "paid",
        "trial": "1 month(s), then the subscription ends",
        "base plan": "free",
        "compatible add-ons": "a, b",
    }
    addon = Package(kind="ADDON", pricing_type=None, max_quantity=None, dependencies=None)
    assert setting_lines(addon) == {"pricing": "none", "maximum quantity": "any", "needs first": "nothing"}


def test_credit_prices_read_as_credits_and_are_not_the_one_charge_editors() -> None:
    rate = PackageCharge(
        is_overage=False,
        billing_model="CREDIT_BASED",
        billing_cadence="RECURRING",
        billing_period="MONTHLY",
        feature_ref="calls",
        credit_rate_amount=Decimal("2"),
        credit_rate_currency_ref="gems",
    )
    assert charge_line(rate) == "2 gems credit(s) a unit of usage"
    grant = PackageCharge(
        is_overage=False,
        billing_model="CREDIT_BASED",
        billing_cadence="RECURRING",
        billing_period="MONTHLY",
        credit_rate_amount=Decimal("100"),
        credit_rate_currency_ref="gems",
        credit_grant_cadence="BEGINNING_OF_BILLING_PERIOD",
        price_amount=Decimal("10"),
        price_currency="usd",
    )
    assert charge_line(grant) == "grants 100 gems credit(s) a unit bought (beginning of billing period) for 10 USD"
    assert not one_charge_editable(rate) and not one_charge_editable(grant)
    flat = PackageCharge(
        is_overage=False, billing_model="FLAT_FEE", billing_cadence="RECURRING", billing_period="MONTHLY"
    )
    assert one_charge_editable(flat)
