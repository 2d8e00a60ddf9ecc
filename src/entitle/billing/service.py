"""Integration use cases: connecting an environment to a provider, listing, building its provider."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from entitle.billing import catalog_sync, coupon_sync, store
from entitle.billing.models import PACKAGE, VENDORS, Integration
from entitle.billing.provider import REQUEST_TIMEOUT_SECONDS, MissingPermissions, ProviderAccount
from entitle.billing.providers import provider_for, provider_for_key
from entitle.billing.schemas import IntegrationIn
from entitle.billing.secrets import SecretBox, secret_box
from entitle.catalog.packages.models import PUBLISHED, Package
from entitle.clock import utcnow
from entitle.customers.models import Customer
from entitle.db import Database
from entitle.db.pagination import Page, PageRequest
from entitle.environments.models import Environment
from entitle.errors import InvalidArgument, NotFound
from entitle.jobs.models import DEAD, PENDING, Job
from entitle.subscriptions.models import Subscription
from entitle.sync_states import SyncState

_LIVE = ("sk_live_", "rk_live_")
_TEST = ("sk_test_", "rk_test_")


class UnknownIntegration(InvalidArgument):
    code = "INTEGRATION_NOT_FOUND"


class IntegrationMismatch(InvalidArgument):
    code = "INTEGRATION_MISMATCH"


def _named_integration(s: Session, env_id: int, billing_information: Mapping[str, Any] | None) -> Integration | None:
    """The connected integration `billingInformation.integrationId` names, or None when it names none (or
    only the vendor, `STRIPE`, which stands for the customer's own); 400 `INTEGRATION_NOT_FOUND` otherwise."""
    ref = (billing_information or {}).get("integrationId")
    if ref is None or ref in VENDORS:
        return None
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("billingInformation.integrationId must be an integration id")
    chosen = store.integration_in(s, env_id, ref)
    if chosen is None:
        raise UnknownIntegration(
            f"billingInformation.integrationId: '{ref}' is not an integration connected to this environment "
            "(GET /api/v1/integrations lists them)"
        )
    return chosen


def choose_subscription_integration(
    s: Session, sub: Subscription, billing_information: Mapping[str, Any] | None
) -> None:
    """In the provisioning transaction, before the billing hooks: a `billingInformation.integrationId`
    must name a connected integration of the environment and agree with the integration the paying
    customer is bound to; it then bills the subscription (and, through it, the customer). Raises 400
    `INTEGRATION_NOT_FOUND` / `INTEGRATION_MISMATCH`; the caller's transaction then writes nothing."""
    chosen = _named_integration(s, sub.environment_id, billing_information)
    if chosen is None:
        return
    customer = s.get(Customer, sub.paying_customer_pk or sub.customer_pk)
    assert customer is not None
    binding = store.customer_binding(s, customer)
    if binding.excludes(chosen):
        held_by = binding.integration.ref_id if binding.integration is not None else "a removed integration"
        raise IntegrationMismatch(
            f"billingInformation.integrationId '{chosen.ref_id}' does not match the integration customer "
            f"'{customer.ref_id}' is billed by ({held_by}): a customer's subscriptions are billed by one integration"
        )
    store.choose_integration(s, sub, chosen)


def check_subscription_integration(
    s: Session, sub: Subscription, billing_information: Mapping[str, Any] | None
) -> None:
    """On an update: a `billingInformation.integrationId` must name the integration already billing the
    subscription (a subscription does not move between integrations); 400 otherwise."""
    chosen = _named_integration(s, sub.environment_id, billing_information)
    if chosen is None:
        return
    current = store.integration_for_subscription(s, sub)
    if current is None or current.pk != chosen.pk:
        raise IntegrationMismatch(
            f"billingInformation.integrationId '{chosen.ref_id}' is not the integration billing subscription "
            f"'{sub.ref_id}': a subscription does not move to another integration (provision a new one there)"
        )


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


def check_publishable_key(key: str | None, livemode: bool) -> None:
    """A publishable key of the secret key's mode: a live page with a test key (or the reverse) would have
    Stripe.js create payment methods the account cannot see."""
    if key is not None and key.startswith("pk_live_") != livemode:
        mode, wanted = ("live", "pk_live_") if livemode else ("test", "pk_test_")
        raise InvalidArgument(
            f"publishableKey: the secret key is a {mode} key, so the publishable key must be {wanted}..."
        )


def key_hint(key: str) -> str:
    return f"{key[:8]}...{key[-4:]}"


@dataclass(frozen=True)
class IntegrationView:
    row: Integration
    is_default: bool


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _view(s: Session, row: Integration) -> IntegrationView:
    default = store.default_integration(s, row.environment_id, row.vendor)
    return IntegrationView(row, default is not None and default.pk == row.pk)


@dataclass(frozen=True)
class _Target:
    env: Environment
    livemode: bool
    api_base: str | None  # where the provider is reached once connected (the stored one when left out)
    row: Integration | None  # the integration updated (or revived); None: a new one


def _target(s: Session, box: SecretBox, env_id: int, body: IntegrationIn) -> _Target:
    """What a connection would write, after every check that needs no provider call (400 / 404)."""
    env = s.get(Environment, env_id)
    if env is None:
        raise NotFound("environment", str(env_id))
    livemode = check_stripe_key(body.api_secret_key, env)
    if body.webhook_secret is not None and not body.webhook_secret.startswith("whsec_"):
        raise InvalidArgument("webhookSecret is not a Stripe webhook signing secret (whsec_...)")
    api_base = body.api_base.rstrip("/") if body.api_base else None
    if api_base is not None and env.is_production and not api_base.startswith("https://"):
        raise InvalidArgument(f"environment '{env.name}' is a production environment: apiBase must be https")
    if body.id is not None:
        row = store.integration_in(s, env_id, body.id, include_removed=True, for_update=True)
        if row is None or row.vendor != body.vendor_identifier:
            raise NotFound("integration", body.id)
    else:
        row = _same_key(s, box, env_id, body.vendor_identifier, body.api_secret_key, key_digest(body.api_secret_key))
    if row is not None and "api_base" not in body.model_fields_set:
        api_base = row.api_base
    kept = row.publishable_key if row is not None and "publishable_key" not in body.model_fields_set else None
    check_publishable_key(body.publishable_key or kept, livemode)
    return _Target(env, livemode, api_base, row)


@dataclass(frozen=True)
class _Checked:
    account: ProviderAccount
    portal_configuration_id: str | None


def _check_with_provider(body: IntegrationIn, api_base: str | None, env_name: str, portal: str | None) -> _Checked:
    """The one moment connecting talks to the provider, before anything is written: the key must open an
    account (its id and name are recorded), a restricted key must have every permission Entitle needs,
    and the billing portal gets the recommended configuration. A provider that does not answer is a 503
    (`PROVIDER_UNAVAILABLE`), a refused key a 400; either way nothing is stored."""
    provider = provider_for_key(body.vendor_identifier, body.api_secret_key, api_base)
    account = provider.check_account()
    if account.missing_permissions:
        raise MissingPermissions(
            "apiSecretKey is a restricted key without permissions Entitle needs: "
            + ", ".join(account.missing_permissions)
            + " (docs/stripe.md, 'Connecting': the permissions a restricted key needs)",
            details=[{"field": "apiSecretKey", "problem": f"missing {p}"} for p in account.missing_permissions],
        )
    configured = provider.ensure_portal_configuration(portal, {"entitleEnvironment": env_name})
    return _Checked(account, configured)


def connect(db: Database, data_dir: Path, env_id: int, body: IntegrationIn) -> IntegrationView:
    """Connect an integration, or update (revive) one (see `IntegrationIn` for which).

    The key is checked with the provider first (`_check_with_provider`), outside any transaction. A new
    integration (and a revived one, for what was published meanwhile) gets the catalog: every published
    plan and add-on and every active coupon is enqueued for sync to it, so connecting late leaves nothing
    unsynced. On an update, settings left out of the body keep their stored values.
    """
    box = secret_box(data_dir)
    fields = body.model_fields_set
    with db.read() as s:  # the checks first, and no session is held open while the provider answers
        target = _target(s, box, env_id, body)
        portal = target.row.portal_configuration_id if target.row is not None else None
        api_base, env_name = target.api_base, target.env.name
    checked = _check_with_provider(body, api_base, env_name, portal)
    with db.transaction() as s:
        target = _target(s, box, env_id, body)
        row = target.row
        created = row is None
        revived = row is not None and row.removed_at is not None
        if row is None:
            row = Integration(
                environment_id=env_id,
                ref_id=str(uuid.uuid4()),
                vendor=body.vendor_identifier,
                sync_customers=body.sync_customers,
                sync_subscriptions=body.sync_subscriptions,
                tax_enabled=body.tax_enabled,
                payment_settlement_hours=body.payment_settlement_hours,
                publishable_key=body.publishable_key,
                is_default=False,
            )
            s.add(row)
        row.removed_at = None  # a removed integration comes back with its links
        row.secret_key_encrypted = box.encrypt(body.api_secret_key)
        row.secret_key_hint = key_hint(body.api_secret_key)
        row.secret_key_digest = key_digest(body.api_secret_key)
        row.livemode = target.livemode
        row.account_id = checked.account.id or row.account_id
        row.account_name = checked.account.name or row.account_name
        row.portal_configuration_id = checked.portal_configuration_id
        if created or "webhook_secret" in fields:  # kept unless a new one (or null) is given
            row.webhook_secret_encrypted = box.encrypt(body.webhook_secret) if body.webhook_secret else None
        row.api_base = target.api_base
        for name in (
            "sync_customers",
            "sync_subscriptions",
            "tax_enabled",
            "payment_settlement_hours",
            "publishable_key",
        ):
            if name in fields:
                setattr(row, name, getattr(body, name))
        row.updated_at = utcnow()
        s.flush()
        if body.is_default is not None:
            _mark_default(s, row, body.is_default)
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
        return _view(s, row)


def refresh_portal_configuration(db: Database, data_dir: Path, env_id: int, ref_id: str) -> IntegrationView:
    """On demand: bring the integration's billing-portal configuration back to the recommended settings
    (someone changed it in the dashboard) or make a new one (it was deleted)."""
    box = secret_box(data_dir)
    with db.read() as s:
        row = store.integration_in(s, env_id, ref_id)
        if row is None:
            raise NotFound("integration", ref_id)
        env = s.get(Environment, env_id)
        assert env is not None
        provider = provider_for(row, box, timeout=REQUEST_TIMEOUT_SECONDS)
        existing = row.portal_configuration_id
    portal = provider.ensure_portal_configuration(existing, {"entitleEnvironment": env.name})
    with db.transaction() as s:
        row = store.integration_in(s, env_id, ref_id, for_update=True)
        if row is None:
            raise NotFound("integration", ref_id)
        row.portal_configuration_id = portal
        row.updated_at = utcnow()
        s.flush()
        return _view(s, row)


def _same_key(s: Session, box: SecretBox, env_id: int, vendor: str, key: str, digest: str) -> Integration | None:
    """The environment's integration connected with this key (also a removed one), if any."""
    row = store.integration_by_key_digest(s, env_id, vendor, digest)
    if row is not None:
        return row
    # Connected before keys had digests: compare the stored (still encrypted) keys.
    legacy = s.scalars(
        select(Integration)
        .where(
            Integration.environment_id == env_id,
            Integration.vendor == vendor,
            Integration.secret_key_digest.is_(None),
            Integration.removed_at.is_(None),
        )
        .order_by(Integration.pk)
        .with_for_update()
    )
    for candidate in legacy:
        if candidate.secret_key_encrypted and box.decrypt(candidate.secret_key_encrypted) == key:
            return candidate
    return None


def _mark_default(s: Session, row: Integration, is_default: bool) -> None:
    """`isDefault: true` makes `row` the one default of its environment; false unmarks it."""
    if is_default:
        others = s.scalars(
            select(Integration).where(
                Integration.environment_id == row.environment_id,
                Integration.vendor == row.vendor,
                Integration.pk != row.pk,
                Integration.is_default.is_(True),
            )
        )
        for other in others:
            other.is_default = False
    row.is_default = is_default
    s.flush()


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


def remove(db: Database, env_id: int, ref_id: str) -> IntegrationView:
    """Disconnect: sync stops, the billing links and ids stay, nothing at the provider is touched.

    The stored secret key and webhook secret are erased; queued provider-writing jobs of the
    integration are dead-lettered with the reason (retry them after connecting again). Only this
    integration is affected: the others of the environment keep syncing (a removed default hands the
    role to the first connected one left).
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
        row.is_default = False
        queued = s.scalars(select(Job).where(Job.status == PENDING, Job.kind.like("billing.%")).with_for_update())
        for job in queued:
            if job.kind in _KEPT_ON_REMOVAL or (job.payload or {}).get("integrationPk") != row.pk:
                continue
            job.status = DEAD
            job.finished_at = now
            job.last_error = f"the integration {row.ref_id} was removed before this job ran"
        s.flush()
        return IntegrationView(row, False)


def list_integrations(db: Database, env_id: int) -> list[IntegrationView]:
    """The connected integrations of the environment, in connection order."""
    with db.read() as s:
        rows = store.integrations(s, env_id)
        defaults = {d.pk for d in (store.default_integration(s, env_id, v) for v in {r.vendor for r in rows}) if d}
        return [IntegrationView(row, row.pk in defaults) for row in rows]


def sync_states(
    db: Database,
    env_id: int,
    ref_id: str,
    page: PageRequest,
    entity_type: str | None = None,
    entity_ref: str | None = None,
) -> Page[SyncState]:
    """What was synced to one integration (also a removed one: its links stay), and how it went."""
    if entity_ref is not None and entity_type is None:
        raise InvalidArgument("entityId needs entityType (PLAN, ADDON, CUSTOMER, SUBSCRIPTION or COUPON)")
    with db.read() as s:
        row = store.integration_in(s, env_id, ref_id, include_removed=True)
        if row is None:
            raise NotFound("integration", ref_id)
        return store.sync_states_page(s, row, page, entity_type, entity_ref)
