"""Integration use cases: connecting an environment to a provider, listing, building its provider."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.billing import catalog_sync, coupon_sync, store
from entitle.billing.models import PACKAGE, Integration
from entitle.billing.schemas import IntegrationIn
from entitle.billing.secrets import secret_box
from entitle.catalog.packages.models import PUBLISHED, Package
from entitle.clock import utcnow
from entitle.db import Database
from entitle.environments.models import Environment
from entitle.errors import InvalidArgument, NotFound
from entitle.jobs.models import DEAD, PENDING, Job

_LIVE = ("sk_live_", "rk_live_")
_TEST = ("sk_test_", "rk_test_")


def check_stripe_key(key: str, env: Environment) -> bool:
    """Whether the key is live; refuses a live key on a non-production environment and the reverse."""
    if key.startswith(_LIVE):
        if not env.is_production:
            raise InvalidArgument(
                f"environment '{env.name}' is not a production environment: it refuses live Stripe keys "
                "(sk_live_/rk_live_); use a test key (sk_test_)"
            )
        return True
    if key.startswith(_TEST):
        if env.is_production:
            raise InvalidArgument(
                f"environment '{env.name}' is a production environment: it refuses Stripe test keys "
                "(sk_test_/rk_test_); use a live key (sk_live_)"
            )
        return False
    raise InvalidArgument("apiSecretKey is not a Stripe secret key (sk_test_..., sk_live_..., or restricted rk_...)")


def key_hint(key: str) -> str:
    return f"{key[:8]}...{key[-4:]}"


def connect(db: Database, data_dir: Path, env_id: int, body: IntegrationIn) -> Integration:
    """Create or replace the environment's integration with the vendor.

    A first connection also enqueues the catalog sync of every plan and add-on already published, so
    connecting late leaves nothing unsynced.
    """
    box = secret_box(data_dir)
    with db.transaction() as s:
        env = s.get(Environment, env_id)
        if env is None:
            raise NotFound("environment", str(env_id))
        livemode = check_stripe_key(body.api_secret_key, env)
        if body.webhook_secret is not None and not body.webhook_secret.startswith("whsec_"):
            raise InvalidArgument("webhookSecret is not a Stripe webhook signing secret (whsec_...)")
        api_base = body.api_base.rstrip("/") if body.api_base else None
        if api_base is not None and env.is_production and not api_base.startswith("https://"):
            raise InvalidArgument(f"environment '{env.name}' is a production environment: apiBase must be https")
        row = store.integration(s, env_id, body.vendor_identifier, for_update=True, include_removed=True)
        created = row is None
        revived = row is not None and row.removed_at is not None
        if row is not None:
            row.removed_at = None  # a removed integration comes back with its links
        if row is None:
            row = Integration(environment_id=env_id, ref_id=str(uuid.uuid4()), vendor=body.vendor_identifier)
            s.add(row)
        row.secret_key_encrypted = box.encrypt(body.api_secret_key)
        row.secret_key_hint = key_hint(body.api_secret_key)
        row.livemode = livemode
        row.webhook_secret_encrypted = box.encrypt(body.webhook_secret) if body.webhook_secret else None
        row.api_base = api_base
        row.sync_customers = body.sync_customers
        row.sync_subscriptions = body.sync_subscriptions
        row.tax_enabled = body.tax_enabled
        row.payment_settlement_hours = body.payment_settlement_hours
        row.updated_at = utcnow()
        s.flush()
        if created:
            published = s.scalars(
                select(Package)
                .where(Package.environment_id == env_id, Package.status == PUBLISHED, Package.is_latest.is_(True))
                .order_by(Package.pk)
            )
            for package in published:
                catalog_sync.enqueue_package_sync(s, row, package)
            coupon_sync.enqueue_all(s, row)
        elif revived:
            _sync_unlinked_packages(s, row)
        return row


def _sync_unlinked_packages(s: Session, row: Integration) -> None:
    """After a removal: sync the plans and add-ons published meanwhile (the others keep their links)."""
    published = s.scalars(
        select(Package)
        .where(Package.environment_id == row.environment_id, Package.status == PUBLISHED, Package.is_latest.is_(True))
        .order_by(Package.pk)
    )
    for package in published:
        if store.link(s, row.pk, PACKAGE, package.pk) is None:
            catalog_sync.enqueue_package_sync(s, row, package)


# Jobs that write to the provider; removing the integration dead-letters those still queued. (Received
# events are still processed, and unpaid subscriptions still settle: neither writes to the provider
# on its own account.)
_KEPT_ON_REMOVAL = ("billing.process_event", "billing.payment_settlement")


def remove(db: Database, env_id: int, ref_id: str) -> Integration:
    """Disconnect: sync stops, the billing links and ids stay, nothing at the provider is touched.

    The stored secret key and webhook secret are erased; queued provider-writing jobs of the
    integration are dead-lettered with the reason (retry them after connecting again).
    """
    with db.transaction() as s:
        row = s.scalars(
            select(Integration).where(
                Integration.environment_id == env_id, Integration.ref_id == ref_id, Integration.removed_at.is_(None)
            )
        ).one_or_none()
        if row is None:
            raise NotFound("integration", ref_id)
        now = utcnow()
        row.removed_at = now
        row.updated_at = now
        row.secret_key_encrypted = ""
        row.webhook_secret_encrypted = None
        queued = s.scalars(select(Job).where(Job.status == PENDING, Job.kind.like("billing.%")).with_for_update())
        for job in queued:
            if job.kind in _KEPT_ON_REMOVAL or (job.payload or {}).get("integrationPk") != row.pk:
                continue
            job.status = DEAD
            job.finished_at = now
            job.last_error = f"the integration {row.ref_id} was removed before this job ran"
        s.flush()
        return row


def list_integrations(db: Database, env_id: int) -> list[Integration]:
    with db.read() as s:
        return store.integrations(s, env_id)
