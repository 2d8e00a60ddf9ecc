"""What the features domain asks of the packages above it before archiving a feature (installed by
`entitle.wiring`): who still uses or grants it. Each answer is a list of labels for the error message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from entitle.domain_events import Contributions

# Plans and add-ons (versions not archived) whose entitlements or prices use the feature.
CatalogUsers = Callable[[Session, int, str], list[str]]
catalog_users: Contributions[CatalogUsers] = Contributions("catalog.features.catalog_users")

# Customers who hold the feature besides the live catalog (a promotion, an archived package on an open
# subscription, an override), at the given instant.
CustomerGrants = Callable[[Session, int, str, datetime], list[str]]
customer_grants: Contributions[CustomerGrants] = Contributions("catalog.features.customer_grants")
