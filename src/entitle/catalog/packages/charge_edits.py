"""One charge of a draft added, changed or removed, the rest of its pricing kept (one transaction each).

The draft's charges are read back as the `charges` of a PATCH (`charge_rules.charges_doc`), changed in
that one place, and the whole pricing replaced through the PATCH's own path (`service.set_charges`:
`pricing_rules.check_pricing`, charge ids kept per price), so each pricing rule is written once and a refusal
reads as the PATCH's would."""

from __future__ import annotations

from pydantic import ValidationError

from entitle.catalog.packages import pricing_rules, service, store
from entitle.catalog.packages.charge_rules import ChargeRow, charges_doc
from entitle.catalog.packages.models import Package, PackageView
from entitle.catalog.packages.schemas import ChargesIn, OveragePricingModelIn, PricingModelIn
from entitle.catalog.packages.service import PackageKind
from entitle.clock import utcnow
from entitle.db import Database
from entitle.errors import InvalidArgument, NotFound


def _replace(
    db: Database,
    env_id: int,
    kind: PackageKind,
    ref: str,
    removed: str | None,
    added: list[ChargeRow],
    pricing_type: str | None,
) -> PackageView:
    with db.transaction() as s:
        package: Package = service.editable(s, env_id, kind, ref, {"charges"})
        stored = store.charges_of(s, package.pk)
        rows: list[ChargeRow] = [c for c in stored if c.charge_id != removed]
        if removed is not None and len(rows) == len(stored):
            raise NotFound("charge", removed)
        doc = charges_doc(
            rows + added,
            pricing_type or package.pricing_type or "PAID",
            package.pricing_billing_id,
            package.overage_billing_period,
        )
        try:
            req = ChargesIn.model_validate(doc)
        except ValidationError as exc:  # a stored charge the request shape no longer takes
            problem = exc.errors()[0]["msg"]
            raise InvalidArgument(f"the draft's other charges cannot be kept as they are: {problem}") from None
        service.set_charges(s, env_id, package, req)
        package.updated_at = utcnow()
        s.flush()
        return store.view(s, package)


def put_charge(
    db: Database,
    env_id: int,
    kind: PackageKind,
    ref: str,
    charge: PricingModelIn | OveragePricingModelIn,
    replacing: str | None = None,
) -> PackageView:
    """Add the charge(s) of one pricing model (each of its price periods is a charge) to the draft, in
    place of the charge `replacing` when given; the draft becomes PAID. The draft's other charges stay
    as they are (and keep their ids), and the result must pass every rule a PATCH of `charges` does."""
    if isinstance(charge, OveragePricingModelIn) and (charge.entitlement or charge.credit_entitlement):
        # Refused rather than dropped: the draft's charges are re-read without the entitlements they set.
        raise InvalidArgument("one charge sets no entitlement: change the entitlement itself on the draft")
    if isinstance(charge, PricingModelIn):
        one = ChargesIn(pricing_type="PAID", pricing_models=[charge])
    else:
        one = ChargesIn(pricing_type="PAID", overage_pricing_models=[charge])
    return _replace(db, env_id, kind, ref, replacing, list(pricing_rules.expand_charges(one)), "PAID")


def remove_charge(db: Database, env_id: int, kind: PackageKind, ref: str, charge_id: str) -> PackageView:
    """Remove one charge from the draft, the others kept (removing the last one of a PAID draft is
    refused as a PATCH would be: make it FREE or CUSTOM instead)."""
    return _replace(db, env_id, kind, ref, charge_id, [], None)
