"""The push adapter: entitlement, usage and credit balance changes become rows of the stream's change log, in the
transaction that made them (installed at start-up by `entitle.wiring.install`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from entitle.catalog.features.events import FeatureChanged
from entitle.credits.events import CreditBalanceChanged, CurrencyChanged
from entitle.customers.events import EntitlementsChanged
from entitle.domain_events import subscribe
from entitle.environments import facts
from entitle.environments.facts import SettingsChanged
from entitle.push import service, store
from entitle.usage import ports as usage_ports
from entitle.usage.events import UsageChanged


def entitlements_changed(s: Session, event: EntitlementsChanged) -> None:
    service.entitlements_updated(s, event.env_id, event.customer_ref, event.resource_ref)


def usage_changed(s: Session, event: UsageChanged) -> None:
    service.usage_updated(s, event.env_id, event.customer_ref, event.resource_ref, event.feature_ref, event.current)


def feature_changed(s: Session, event: FeatureChanged) -> None:
    service.feature_changed(s, event.env_id, event.feature_ref)


def currency_changed(s: Session, event: CurrencyChanged) -> None:
    service.currency_changed(s, event.env_id, event.currency_ref)


def settings_changed(s: Session, event: SettingsChanged) -> None:
    service.settings_changed(s, event.env_id, event.fact)


def credits_changed(s: Session, event: CreditBalanceChanged) -> None:
    w = event.wallet
    service.credits_updated(
        s, event.env_id, w.customer_ref, w.resource_ref, w.currency_ref, w.usage_limit, w.current_usage, w.reserved
    )


def install() -> None:
    subscribe(EntitlementsChanged, entitlements_changed)
    subscribe(UsageChanged, usage_changed)
    subscribe(FeatureChanged, feature_changed)
    subscribe(CreditBalanceChanged, credits_changed)
    subscribe(CurrencyChanged, currency_changed)
    subscribe(SettingsChanged, settings_changed)
    # What a process knows an environment lacks holds while the log has no change of it unread here.
    facts.settings_changed_after.install(store.settings_changed_after)
    # The log holds every entitlement and feature change, committed with it: ingestion asks it whether
    # grants it resolved before its write transaction still hold.
    usage_ports.grant_changes.install(
        usage_ports.GrantChanges(
            mark=store.newest_of_environment,
            unchanged_since=store.grants_unchanged_since,
            changed_since=store.grants_changed_since,
        )
    )
