"""Plans and add-ons ("packages"), stored one row per version.

A plan or add-on is identified on the wire by its `ref_id`; each change cycle (draft -> publish) makes
a new version row, and entitlements and charges hang off a version. A published version is never
edited again (except its display fields, see the service), so subscriptions can keep pointing at the
version they bought while newer versions are published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import ExactDecimal, JSONDoc, UTCDateTime

_FK = BigInteger().with_variant(Integer(), "sqlite")

PLAN = "PLAN"
ADDON = "ADDON"
DRAFT = "DRAFT"
PUBLISHED = "PUBLISHED"
ARCHIVED = "ARCHIVED"
PACKAGE_STATUSES: tuple[str, ...] = (DRAFT, PUBLISHED, ARCHIVED)


class Package(EnvironmentScoped, Base):
    """One version of a plan (kind PLAN) or an add-on (kind ADDON).

    At most one version of a package is a DRAFT, and it is always the highest version. `is_latest`
    marks the most recently published version (the one new subscriptions get); older published
    versions stay PUBLISHED with `is_latest` false.
    """

    __tablename__ = "packages"
    __table_args__ = (
        UniqueConstraint("environment_id", "kind", "ref_id", "version_number"),
        Index("ix_packages_ref", "environment_id", "kind", "ref_id"),
    )

    kind: Mapped[str] = mapped_column(String(8))
    ref_id: Mapped[str] = mapped_column(String(255))
    product_pk: Mapped[int] = mapped_column(_FK, ForeignKey("products.pk", ondelete="CASCADE"), index=True)
    version_number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=DRAFT)
    is_latest: Mapped[bool] = mapped_column(default=False)
    display_name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    billing_id: Mapped[str | None] = mapped_column(Text, default=None)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONDoc(), default=dict)
    pricing_type: Mapped[str | None] = mapped_column(String(16), default=None)
    # Plans only: inheritance, add-ons that may be bought with the plan, automatic trial (wire form).
    parent_plan_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    compatible_addon_ids: Mapped[list[str] | None] = mapped_column(JSONDoc(), default=None)
    default_trial_config: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    # Add-ons only: purchase cap per subscription, add-ons that must be bought first.
    max_quantity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    dependencies: Mapped[list[str] | None] = mapped_column(JSONDoc(), default=None)
    # Pricing configuration that is not one charge row (the `charges` body of PATCH).
    overage_billing_period: Mapped[str | None] = mapped_column(String(32), default=None)
    pricing_billing_id: Mapped[str | None] = mapped_column(Text, default=None)
    # Publishing: when, the task id returned, and who the version applies to. An ALL_CUSTOMERS publish
    # is recorded here; moving existing subscriptions onto it is the subscriptions work's job.
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    publish_task_id: Mapped[str | None] = mapped_column(String(64), default=None)
    migration_type: Mapped[str | None] = mapped_column(String(16), default=None)
    # The status this version had when its product's archive archived it (None otherwise): unarchiving the
    # product restores it, and leaves archived the versions archived on their own.
    archived_from_status: Mapped[str | None] = mapped_column(String(16), default=None)


class PackageEntitlement(EnvironmentScoped, Base):
    """What one package version grants: a feature (type FEATURE) or credits of a currency (type CREDIT)."""

    __tablename__ = "package_entitlements"
    __table_args__ = (UniqueConstraint("package_pk", "entitlement_type", "ref_id"),)

    package_pk: Mapped[int] = mapped_column(_FK, ForeignKey("packages.pk", ondelete="CASCADE"), index=True)
    entitlement_type: Mapped[str] = mapped_column(String(8))
    # The feature id (FEATURE) or the custom currency id (CREDIT).
    ref_id: Mapped[str] = mapped_column(String(255))
    behavior: Mapped[str] = mapped_column(String(16), default="Increment")
    is_granted: Mapped[bool] = mapped_column(default=True)
    hidden_from_widgets: Mapped[list[str]] = mapped_column(JSONDoc(), default=list)
    is_custom: Mapped[bool | None] = mapped_column(default=None)
    order: Mapped[Decimal | None] = mapped_column("sort_order", ExactDecimal(), default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    display_name_override: Mapped[str | None] = mapped_column(Text, default=None)
    has_soft_limit: Mapped[bool | None] = mapped_column(default=None)
    # FEATURE
    usage_limit: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    has_unlimited_usage: Mapped[bool | None] = mapped_column(default=None)
    reset_period: Mapped[str | None] = mapped_column(String(8), default=None)
    reset_period_configuration: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    enum_values: Mapped[list[str] | None] = mapped_column(JSONDoc(), default=None)
    # CREDIT
    amount: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    cadence: Mapped[str | None] = mapped_column(String(8), default=None)
    dependency_feature_ref: Mapped[str | None] = mapped_column(String(255), default=None)


class PackageCharge(EnvironmentScoped, Base):
    """One price of a package version: one pricing model x one price period (billing period, country).

    `charge_id` is the wire id. It is kept when a version is copied into a draft and when the draft's
    pricing is replaced with a price for the same (overage, model, feature, period, country), so a
    price keeps its id for as long as it exists.
    """

    __tablename__ = "package_charges"
    __table_args__ = (UniqueConstraint("package_pk", "charge_id"),)

    package_pk: Mapped[int] = mapped_column(_FK, ForeignKey("packages.pk", ondelete="CASCADE"), index=True)
    charge_id: Mapped[str] = mapped_column(String(64))
    is_overage: Mapped[bool] = mapped_column(default=False)
    billing_model: Mapped[str] = mapped_column(String(16))
    billing_cadence: Mapped[str] = mapped_column(String(16), default="RECURRING")
    billing_period: Mapped[str] = mapped_column(String(16))
    billing_country_code: Mapped[str | None] = mapped_column(String(16), default=None)
    feature_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    price_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    price_currency: Mapped[str | None] = mapped_column(String(8), default=None)
    # [{"upTo": "100" | None, "unitPrice": {"amount": "0.5", "currency": "usd"}?, "flatPrice": {...}?}],
    # amounts as exact decimal strings.
    tiers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDoc(), default=None)
    tiers_mode: Mapped[str | None] = mapped_column(String(16), default=None)
    block_size: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    min_unit_quantity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    max_unit_quantity: Mapped[int | None] = mapped_column(BigInteger, default=None)
    reset_period: Mapped[str | None] = mapped_column(String(8), default=None)
    reset_period_configuration: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc(), default=None)
    credit_grant_cadence: Mapped[str | None] = mapped_column(String(32), default=None)
    credit_rate_amount: Mapped[Decimal | None] = mapped_column(ExactDecimal(), default=None)
    credit_rate_currency_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    credit_rate_cost_formula: Mapped[str | None] = mapped_column(Text, default=None)
    top_up_custom_currency_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    # Credit overage: the custom currency the overage price applies to.
    custom_currency_ref: Mapped[str | None] = mapped_column(String(255), default=None)
    billing_id: Mapped[str | None] = mapped_column(Text, default=None)

    @property
    def grants_credits(self) -> bool:
        """A credit charge: a CREDIT_BASED price of no feature, with a grant cadence, whose every unit grants
        `credit_rate_amount` credits of its currency per grant period (and costs the price, if it has one).
        A CREDIT_BASED price of a feature is a credit rate instead: the feature's usage costs credits."""
        return (
            self.billing_model == "CREDIT_BASED"
            and self.feature_ref is None
            and self.credit_grant_cadence is not None
            and self.credit_rate_amount is not None
            and self.credit_rate_currency_ref is not None
            and not self.is_overage
        )


@dataclass(frozen=True)
class PackageView:
    """One package version as the API shows it: the row, its product's id and its entitlements."""

    package: Package
    product_ref: str
    entitlements: list[PackageEntitlement] = field(default_factory=list)
