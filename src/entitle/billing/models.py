"""Billing integrations (several per environment: e.g. two Stripe accounts) and links from Entitle entities to
provider ids, each link recording which integration holds the entity and the state of its sync."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from entitle.db.base import Base, EnvironmentScoped
from entitle.db.types import JSONDoc, UTCDateTime

_FK = BigInteger().with_variant(Integer(), "sqlite")

STRIPE = "STRIPE"
VENDORS: tuple[str, ...] = (STRIPE,)

# Sync states of a billing link.
PENDING = "PENDING"
SUCCESS = "SUCCESS"
ERROR = "ERROR"
NO_SYNC_REQUIRED = "NO_SYNC_REQUIRED"
SYNC_STATES: tuple[str, ...] = (PENDING, SUCCESS, ERROR, NO_SYNC_REQUIRED)

# Kinds of linked entity: a plan or add-on *version* (-> a provider product) and one of its charges
# (-> a provider price), a customer and a subscription.
PACKAGE = "PACKAGE"
PACKAGE_CHARGE = "PACKAGE_CHARGE"
CUSTOMER = "CUSTOMER"
SUBSCRIPTION = "SUBSCRIPTION"
COUPON = "COUPON"


class Integration(EnvironmentScoped, Base):
    """A connection from one environment to a billing provider account.

    The secret key and webhook secret are stored encrypted (`entitle.billing.secrets`); the hint keeps
    the key's prefix and last four characters so an operator can tell which key is in use, and the digest
    (sha256) lets a connection without an id find the integration of the same key again.

    An environment may have several (two Stripe accounts): the catalog is synced to every connected one;
    a customer and its subscriptions are billed by one (`entitle.billing.store.integration_for_customer`).
    """

    __tablename__ = "integrations"
    __table_args__ = (
        UniqueConstraint("ref_id"),
        Index("ix_integrations_environment_id_vendor", "environment_id", "vendor"),
    )

    ref_id: Mapped[str] = mapped_column(String(64))
    vendor: Mapped[str] = mapped_column(String(32))
    secret_key_encrypted: Mapped[str] = mapped_column(Text)
    secret_key_hint: Mapped[str] = mapped_column(String(64))
    secret_key_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    # The environment's default integration (bills customers linked to no integration); without one
    # marked, the first connected one still active is the default.
    is_default: Mapped[bool] = mapped_column(default=False, server_default=false())
    livemode: Mapped[bool] = mapped_column(default=False)
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text, default=None)
    # Where the provider's API is reached (None: the SDK's default, the real provider).
    api_base: Mapped[str | None] = mapped_column(Text, default=None)
    sync_customers: Mapped[bool] = mapped_column(default=True)
    sync_subscriptions: Mapped[bool] = mapped_column(default=True)
    tax_enabled: Mapped[bool] = mapped_column(default=False)
    # How long a new paid subscription may wait for its first payment before it is cancelled on both sides.
    payment_settlement_hours: Mapped[int] = mapped_column(Integer, default=24, server_default="24")
    # The account's publishable key (not a secret: Stripe.js runs with it in customers' browsers), handed
    # to the widgets with a SetupIntent so a page need not carry it.
    publishable_key: Mapped[str | None] = mapped_column(String(255), default=None)
    # Set by `DELETE /api/v1/integrations/{id}`: nothing is synced any more, the links stay (a later
    # connection with the same id, or the same key, revives this row and its links).
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The provider account the key opens, read when connecting (the key is checked then).
    account_id: Mapped[str | None] = mapped_column(String(255), default=None)
    account_name: Mapped[str | None] = mapped_column(Text, default=None)
    # The billing-portal configuration with Entitle's recommended settings; portal sessions use it.
    portal_configuration_id: Mapped[str | None] = mapped_column(String(255), default=None)


class BillingLink(EnvironmentScoped, Base):
    """One Entitle entity (kind + pk) and its id at the provider, with the state of its sync."""

    __tablename__ = "billing_links"
    __table_args__ = (
        UniqueConstraint("integration_pk", "entity_kind", "entity_pk"),
        Index("ix_billing_links_billing_id", "integration_pk", "billing_id"),
        Index("ix_billing_links_entity", "entity_kind", "entity_pk"),
    )

    integration_pk: Mapped[int] = mapped_column(_FK, ForeignKey("integrations.pk", ondelete="CASCADE"))
    entity_kind: Mapped[str] = mapped_column(String(32))
    entity_pk: Mapped[int] = mapped_column(_FK)
    billing_id: Mapped[str | None] = mapped_column(Text, default=None)
    sync_state: Mapped[str] = mapped_column(String(24), default=PENDING)
    # Why: the error of an ERROR, what makes a NO_SYNC_REQUIRED unnecessary.
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    # Provider-side facts needed later (e.g. what a price was created with, whether it is archived).
    details: Mapped[dict[str, Any]] = mapped_column(JSONDoc(), default=dict)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


# States of an inbound provider event.
RECEIVED = "RECEIVED"  # stored, its processing job enqueued
PROCESSED = "PROCESSED"  # the job acted on it
IGNORED = "IGNORED"  # the job found nothing in Entitle to act on (the outcome says why)


class BillingEvent(EnvironmentScoped, Base):
    """One event a provider sent us (a Stripe webhook), stored once per provider event id and integration.

    The inbound endpoint stores it and enqueues its processing job in one transaction, then answers
    2xx; a redelivery of the same event id only counts another delivery.
    """

    __tablename__ = "billing_events"
    __table_args__ = (UniqueConstraint("integration_pk", "event_id"),)

    integration_pk: Mapped[int] = mapped_column(_FK, ForeignKey("integrations.pk", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc())
    status: Mapped[str] = mapped_column(String(24), default=RECEIVED)
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    # What processing did, or why there was nothing to do.
    outcome: Mapped[str | None] = mapped_column(Text, default=None)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
