"""Imports every ORM model so the metadata (and Alembic) sees the whole schema."""

from __future__ import annotations


def import_all_models() -> None:
    import entitle.audit.models
    import entitle.billing.models
    import entitle.billing.usage_models
    import entitle.catalog.coupons.models
    import entitle.catalog.features.models
    import entitle.catalog.packages.models
    import entitle.catalog.products.models
    import entitle.console.models
    import entitle.contracts.models
    import entitle.credits.models
    import entitle.customers.models
    import entitle.environments.models
    import entitle.events.models
    import entitle.jobs.models
    import entitle.promotions.models
    import entitle.push.models
    import entitle.subscriptions.models
    import entitle.usage.models
    import entitle.webhooks.models  # noqa: F401
