"""The entitlements domain answers the subscriptions domain below it: the provisioning response carries
the customer's entitlements after the change (installed by `entitle.wiring.install`)."""

from __future__ import annotations

from entitle.entitlements.service import results_in_session
from entitle.subscriptions import ports as subscription_ports


def install() -> None:
    subscription_ports.current_entitlements.install(results_in_session)
