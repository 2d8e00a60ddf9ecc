"""The composition root: what each layer plugs into the layers below it, installed once at start-up.

Domains announce what happened as domain events (`entitle.domain_events`) and ask the layers above
them through ports; nothing below imports what is above. This module, at the top beside `app` and
`cli`, is where the two meet: it subscribes the domains' own reactions first (in layer order), then the
side-effect adapters (billing, webhooks, push), and imports every module that registers a job handler.

`install()` is idempotent; `create_app`, the CLI and the test suite call it.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_installed = False


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _install()
        _installed = True


def _install() -> None:
    # Domain reactions, lowest layer first: they run before the adapters hear the same event, so an
    # adapter records the consequences of a change before the change itself (see domain_events).
    from entitle.catalog.packages import reactions as packages
    from entitle.credits import notices as credit_notices
    from entitle.credits import subscribers as credits
    from entitle.entitlements import reactions as entitlements
    from entitle.promotions import reactions as promotions
    from entitle.subscriptions import reactions as subscriptions
    from entitle.usage import reactions as usage

    packages.install()
    promotions.install()
    subscriptions.install()
    from entitle.contracts import service as contracts

    contracts.install()
    usage.install()
    credits.install()
    credit_notices.install()
    entitlements.install()

    # Side-effect adapters.
    from entitle.billing import subscribers as billing
    from entitle.push import subscribers as push
    from entitle.webhooks import subscribers as webhooks

    billing.install()
    webhooks.install()
    push.install()

    # The audit log hears every write a known actor (API key, console user, CLI) makes.
    from entitle.audit import subscribers as audit

    audit.install()

    # Job handlers register themselves when their module is imported.
    import entitle.billing.catalog_sync
    import entitle.billing.coupon_sync
    import entitle.billing.customer_sync
    import entitle.billing.inbound
    import entitle.billing.subscription_sync
    import entitle.billing.usage_sync
    import entitle.credits.grants
    import entitle.credits.recurring
    import entitle.promotions.service
    import entitle.subscriptions.lifecycle
    import entitle.webhooks.delivery
    import entitle.webhooks.scheduled  # noqa: F401
