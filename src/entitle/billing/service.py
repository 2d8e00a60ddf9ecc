"""Integration use cases: connecting an environment to a provider, listing, building its provider."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select

from entitle.billing import catalog_sync, coupon_sync, store
from entitle.billing.models import Integration
from entitle.billing.schemas import IntegrationIn
from entitle.billing.secrets import secret_box
from entitle.catalog.packages.models import PUBLISHED, Package
from entitle.clock import utcnow
from entitle.db import Database
from entitle.environments.models import Environment
from entitle.errors import InvalidArgument, NotFound

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
        row = store.integration(s, env_id, body.vendor_identifier, for_update=True)
        created = row is None
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
        return row


def list_integrations(db: Database, env_id: int) -> list[Integration]:
    with db.read() as s:
        return store.integrations(s, env_id)
