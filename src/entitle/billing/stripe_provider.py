"""The Stripe provider, through the official `stripe` package only (`stripe.StripeClient`).

With `stripe_support` (its functions and constants), the only module that imports `stripe`. The API
base is configurable (an integration's `apiBase`; tests point it at a local emulator). The SDK's own
network retries are off: retrying is the job queue's business (durable, with backoff), and every write
carries an idempotency key derived from the job, so a retried job replays Stripe's first answer
instead of creating a second object. Calls a request waits for (checking a key, the portal
configuration, a payment method) use a short timeout and answer in Entitle's errors instead.

Catalog mapping: a plan or add-on is one Stripe Product (`<Product> <Plan> Plan`, `<Product> <Add-on>
Add-on`) shared by all its versions; each supported charge of a version is one Price (prices are
immutable at Stripe: a version whose charge changed gets a new Price and the replaced one is
archived — subscriptions already on it keep it).

Customers and subscriptions: an Entitle customer is one Stripe Customer (its payment method, when
given, attached as the default); a paid subscription is one Stripe Subscription with one item per
synced price; cancelling retrieves it first, so cancelling a cancelled subscription is a no-op.

Checkout, portal, invoices and tax: a Checkout Session in `subscription` mode (the subscription Stripe
creates when it is paid carries the Entitle metadata through `subscription_data`), a Billing Portal
session, and the customer's Invoices read back. With Stripe Tax on (`automatic_tax`), both checkout
sessions and created subscriptions ask Stripe to compute tax (`automatic_tax[enabled]=true`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, cast

import stripe
from stripe.params import (
    CouponCreateParams,
    CustomerCreateParams,
    CustomerUpdateParams,
    ProductCreateParams,
    ProductUpdateParams,
    SubscriptionCreateParams,
    SubscriptionUpdateParams,
)
from stripe.params.billing import MeterCreateParams
from stripe.params.checkout import SessionCreateParams

from entitle.billing import stripe_customer_details
from entitle.billing.models import STRIPE
from entitle.billing.provider import (
    DEFAULT_DAYS_UNTIL_DUE,
    BillingDetails,
    CatalogEntity,
    CheckoutRequest,
    CheckoutSession,
    CouponSpec,
    CreditInvoiceSpec,
    CustomerSpec,
    InvalidSignature,
    MeterSpec,
    PaymentMethodDetails,
    PlanChange,
    PromotionCode,
    ProviderAccount,
    ProviderEvent,
    ProviderInvoice,
    SubscriptionSpec,
    SyncedCatalogEntity,
    SyncedPrice,
    UsageReport,
)
from entitle.billing.stripe_support import (
    HANDLED_EVENTS,
    RECOMMENDED_PORTAL_FEATURES,
    REQUIRED_PERMISSIONS,
    _coupon_of,
    _id_of,
    _invoice,
    _item_change,
    _plain,
    _price_params,
    _promotion_code_of,
    _waited_for,
    change_subscription_items,
    create_credit_invoice,
    credit_invoice_made,
    item_edits,
    mark_latest_invoice_paid,
    price_fingerprint,
    priced_items,
    void_invoice,
)
from entitle.errors import FailedPrecondition, InvalidArgument

# The metadata that names an Entitle customer or subscription at Stripe (within one environment).
_CUSTOMER_IDENTITY = ("entitleEnvironment", "entitleCustomerId")
_SUBSCRIPTION_IDENTITY = ("entitleEnvironment", "entitleSubscriptionId")


class ProviderRetryLater(RuntimeError):
    """A provider call that cannot succeed yet but may later (the job retries with backoff)."""


def _search_literal(value: str) -> str:
    """A value quoted for Stripe's search query language (backslash-escaped quotes)."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


class StripeProvider:
    vendor = STRIPE

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str | None = None,
        webhook_secret: str | None = None,
        timeout: float = 30.0,
        automatic_tax: bool = False,
    ) -> None:
        base = api_base.rstrip("/") if api_base else None
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": base, "connect": base, "files": base, "meter_events": base} if base else {},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout),
        )
        self.webhook_secret = webhook_secret
        self.automatic_tax = automatic_tax

    # -- catalog -------------------------------------------------------------------------------------

    def sync_catalog_entity(
        self,
        entity: CatalogEntity,
        previous: SyncedCatalogEntity | None,
        *,
        archive_replaced: bool,
        idempotency_key: str,
    ) -> SyncedCatalogEntity | None:
        if previous is None:
            create: ProductCreateParams = {"name": entity.name, "metadata": entity.metadata}
            if entity.description:
                create["description"] = entity.description
            product = self.client.v1.products.create(
                params=create, options={"idempotency_key": f"{idempotency_key}:product"}
            )
        else:
            update: ProductUpdateParams = {
                "name": entity.name,
                "metadata": entity.metadata,
                "description": entity.description or "",
            }
            product = self.client.v1.products.update(
                previous.product_id, params=update, options={"idempotency_key": f"{idempotency_key}:product"}
            )
        prices: dict[str, SyncedPrice] = {}
        for spec in entity.prices:
            fingerprint = price_fingerprint(spec, product.id)
            old = previous.prices.get(spec.key) if previous is not None else None
            if old is not None and old.fingerprint == fingerprint:
                prices[spec.key] = old
                continue
            meter_id = (
                self.ensure_meter(spec.meter, idempotency_key=f"{idempotency_key}:price:{spec.key}")
                if spec.meter is not None
                else None
            )
            price = self.client.v1.prices.create(
                params=_price_params(spec, product.id, meter_id),
                options={"idempotency_key": f"{idempotency_key}:price:{spec.key}"},
            )
            prices[spec.key] = SyncedPrice(billing_id=price.id, fingerprint=fingerprint)
        archived: list[str] = []
        if archive_replaced and previous is not None:
            kept = {p.billing_id for p in prices.values()}
            for old in previous.prices.values():
                if old.billing_id in kept or old.billing_id in archived:
                    continue
                self.client.v1.prices.update(
                    old.billing_id,
                    params={"active": False},
                    options={"idempotency_key": f"{idempotency_key}:archive:{old.billing_id}"},
                )
                archived.append(old.billing_id)
        return SyncedCatalogEntity(product_id=product.id, prices=prices, archived=tuple(archived))

    # -- customers and subscriptions -------------------------------------------------------------------

    def sync_customer(self, customer: CustomerSpec, *, existing_id: str | None, idempotency_key: str) -> str | None:
        """Create the Stripe Customer (or, with `existing_id`, refresh its name, email, locales and
        metadata); returns its id. A field Entitle holds no value for is left as Stripe has it."""
        contact = stripe_customer_details.contact_params(customer)
        if existing_id is not None:
            self.client.v1.customers.update(
                existing_id,
                params=cast(CustomerUpdateParams, {"metadata": customer.metadata, **contact}),
                options={"idempotency_key": f"{idempotency_key}:customer-update"},
            )
            return existing_id
        params = cast(CustomerCreateParams, {"metadata": customer.metadata, **contact})
        if customer.payment_method:
            params["payment_method"] = customer.payment_method
            params["invoice_settings"] = {"default_payment_method": customer.payment_method}
        try:
            created = self.client.v1.customers.create(
                params=params, options={"idempotency_key": f"{idempotency_key}:customer"}
            )
        except stripe.IdempotencyError:
            return self._created_earlier("customers", customer.metadata, _CUSTOMER_IDENTITY)
        return created.id

    def create_subscription(self, subscription: SubscriptionSpec, *, idempotency_key: str) -> str | None:
        items = priced_items(self.client, subscription.items, subscription.ref, idempotency_key=idempotency_key)
        params: SubscriptionCreateParams = {
            "customer": subscription.customer_billing_id,
            "items": [
                {"price": i.price_billing_id, "quantity": i.quantity}
                if i.quantity is not None
                else {"price": i.price_billing_id}  # metered: billed from the reported usage
                for i in items
            ],
            "metadata": {**(subscription.extra_metadata or {}), **subscription.metadata},
            "collection_method": subscription.collection_method,
        }
        if subscription.tax_rate_ids:
            params["default_tax_rates"] = list(subscription.tax_rate_ids)
        if subscription.trial_end is not None:
            params["trial_end"] = int(subscription.trial_end.timestamp())
        if subscription.collection_method == "send_invoice":
            days = subscription.days_until_due
            params["days_until_due"] = DEFAULT_DAYS_UNTIL_DUE if days is None else days
        elif subscription.default_payment_method:
            params["default_payment_method"] = subscription.default_payment_method
        if subscription.promotion_code_billing_id:
            params["discounts"] = [{"promotion_code": subscription.promotion_code_billing_id}]
        elif subscription.coupon_billing_id:
            params["discounts"] = [{"coupon": subscription.coupon_billing_id}]
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        try:
            created = self.client.v1.subscriptions.create(
                params=params, options={"idempotency_key": f"{idempotency_key}:subscription"}
            )
        except stripe.IdempotencyError:
            return self._created_earlier("subscriptions", subscription.metadata, _SUBSCRIPTION_IDENTITY)
        return created.id

    def _created_earlier(
        self, resource: Literal["customers", "subscriptions"], metadata: dict[str, str], identity: tuple[str, ...]
    ) -> str:
        """The object an earlier attempt of this job created under the same idempotency key.

        Stripe refuses a key reused with other parameters (`idempotency_error`): the first request
        succeeded, its answer was lost with the worker that sent it, and the entity changed before the
        job ran again (a renamed customer, a requantified subscription). Re-sending under a new key
        would make a second object, so the one made first is found by the metadata linking it back;
        the job's later steps (and the update sync) bring it up to date. Stripe's search is eventually
        consistent (about a minute), so "not found yet" is a retryable failure, never a new create.
        """
        query = " AND ".join(f"metadata['{key}']:'{_search_literal(metadata[key])}'" for key in identity)
        service = self.client.v1.customers if resource == "customers" else self.client.v1.subscriptions
        found = service.search(params={"query": query, "limit": 2}).data
        if len(found) != 1:
            raise ProviderRetryLater(
                f"Stripe refused to replay an earlier {resource[:-1]} create (the entity changed since) and "
                f"{'no' if not found else 'more than one'} {resource[:-1]} with {query} is searchable yet"
            )
        return str(found[0].id)

    def update_subscription(self, billing_id: str, subscription: SubscriptionSpec, *, idempotency_key: str) -> bool:
        """One `POST /v1/subscriptions/{id}` with only what differs from what Stripe holds now: the item
        edits (`rules.item_changes`: kept items get a new quantity, a replaced plan keeps its item with
        a new price, removed items `deleted`, new ones added) with `proration_behavior`, the discount,
        the collection method and the metadata. Nothing is sent when Stripe already matches, so a retry
        after a lost answer writes nothing twice; an ended subscription is left alone."""
        retrieved = self.client.v1.subscriptions.retrieve(billing_id, params={"expand": ["discounts"]})
        current: dict[str, Any] = retrieved.to_dict()
        if current.get("status") in ("canceled", "incomplete_expired"):
            return False
        params: SubscriptionUpdateParams = {}
        changes = item_edits(self.client, current, subscription, idempotency_key)
        if changes:
            params["items"] = [cast(Any, _item_change(c)) for c in changes]
            params["proration_behavior"] = subscription.proration_behavior
        promotion = subscription.promotion_code_billing_id
        if promotion and _promotion_code_of(current) != promotion:
            params["discounts"] = [{"promotion_code": promotion}]
        elif not promotion and _coupon_of(current) != subscription.coupon_billing_id:
            params["discounts"] = [{"coupon": subscription.coupon_billing_id}] if subscription.coupon_billing_id else ""
        if current.get("collection_method") != subscription.collection_method:
            params["collection_method"] = subscription.collection_method
        if subscription.collection_method == "send_invoice":
            # Entitle does not keep the days (billing information): only a request's value is sent, and
            # Stripe's own stays otherwise; one switching to send_invoice needs some.
            days = subscription.days_until_due
            if days is None and current.get("collection_method") != "send_invoice":
                days = DEFAULT_DAYS_UNTIL_DUE
            if days is not None and current.get("days_until_due") != days:
                params["days_until_due"] = days
        elif subscription.default_payment_method and (
            _id_of(current.get("default_payment_method")) != subscription.default_payment_method
        ):
            params["default_payment_method"] = subscription.default_payment_method
        held_metadata = dict(current.get("metadata") or {})
        wanted_metadata = {**(subscription.extra_metadata or {}), **subscription.metadata}
        if any(held_metadata.get(k) != v for k, v in wanted_metadata.items()):
            params["metadata"] = wanted_metadata
        if subscription.tax_rate_ids is not None:
            held_rates = [_id_of(rate) for rate in current.get("default_tax_rates") or []]
            if held_rates != list(subscription.tax_rate_ids):
                params["default_tax_rates"] = list(subscription.tax_rate_ids) or ""
        if not params:
            return False
        self.client.v1.subscriptions.update(
            billing_id, params=params, options={"idempotency_key": f"{idempotency_key}:update"}
        )
        return True

    def change_subscription(
        self, billing_id: str, subscription: SubscriptionSpec, *, at: datetime, idempotency_key: str
    ) -> PlanChange | None:
        return change_subscription_items(self.client, billing_id, subscription, at, idempotency_key)

    def cancel_subscription(self, billing_id: str, *, at: datetime | None, idempotency_key: str) -> None:
        """Cancel now (`at` None) or at a given instant; cancelling a cancelled subscription is a no-op."""
        current = self.client.v1.subscriptions.retrieve(billing_id)
        if current.status in ("canceled", "incomplete_expired"):
            return
        if at is None:
            self.client.v1.subscriptions.cancel(billing_id, options={"idempotency_key": f"{idempotency_key}:cancel"})
        else:
            self.client.v1.subscriptions.update(
                billing_id,
                params={"cancel_at": int(at.timestamp())},
                options={"idempotency_key": f"{idempotency_key}:cancel"},
            )

    # -- later slices ----------------------------------------------------------------------------------

    def report_usage(self, usage: UsageReport, *, idempotency_key: str) -> None:
        """One Billing Meter event: Stripe counts an `identifier` once (within its 24-hour window),
        and the idempotency key replays the first answer to a retry."""
        self.client.v1.billing.meter_events.create(
            params={
                "event_name": usage.meter,
                "identifier": usage.identifier,
                "timestamp": int(usage.timestamp.timestamp()),
                "payload": {"stripe_customer_id": usage.customer_billing_id, "value": _plain(usage.value)},
            },
            options={"idempotency_key": f"{idempotency_key}:usage:{usage.identifier}"},
        )

    def reported_usage(
        self, meter_billing_id: str, customer_billing_id: str, since: datetime, until: datetime
    ) -> Decimal:
        """The meter's event summaries for the customer over [since, until) (Stripe wants whole minutes)."""
        summaries = self.client.v1.billing.meters.event_summaries.list(
            meter_billing_id,
            params={
                "customer": customer_billing_id,
                "start_time": int(since.timestamp()),
                "end_time": int(until.timestamp()),
            },
        )
        return sum((Decimal(str(s.aggregated_value)) for s in summaries.auto_paging_iter()), Decimal(0))

    # -- coupons and meters ----------------------------------------------------------------------------

    def sync_coupon(self, coupon: CouponSpec, *, idempotency_key: str) -> str | None:
        """Create the Stripe Coupon with the given id; one that exists already (an earlier connection
        made it) is reused: Stripe coupons cannot change their discount."""
        try:
            return self.client.v1.coupons.retrieve(coupon.ref).id
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing" and exc.http_status != 404:
                raise
        params: CouponCreateParams = {
            "id": coupon.ref,
            "name": coupon.name[:40],  # Stripe's limit for a coupon name
            "metadata": coupon.metadata,
            "duration": "forever" if coupon.duration_in_months is None else "repeating",
        }
        if coupon.duration_in_months is not None:
            params["duration_in_months"] = coupon.duration_in_months
        if coupon.percent_off is not None:
            # Sent as written (a float would round it); Stripe takes up to two decimal places.
            params["percent_off"] = cast(float, _plain(coupon.percent_off))
        else:
            currencies = sorted(coupon.amounts_off_minor)
            params["currency"] = currencies[0]
            params["amount_off"] = coupon.amounts_off_minor[currencies[0]]
            if len(currencies) > 1:
                params["currency_options"] = {c: {"amount_off": coupon.amounts_off_minor[c]} for c in currencies[1:]}
        created = self.client.v1.coupons.create(params=params, options={"idempotency_key": f"{idempotency_key}:coupon"})
        return created.id

    def delete_coupon(self, billing_id: str, *, idempotency_key: str) -> None:
        try:
            self.client.v1.coupons.delete(billing_id, options={"idempotency_key": f"{idempotency_key}:coupon-delete"})
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_missing" and exc.http_status != 404:
                raise

    def ensure_meter(self, meter: MeterSpec, *, idempotency_key: str) -> str | None:
        """The active Billing Meter with the event name, created (summing `value` per Stripe customer)
        when there is none."""
        for found in self.client.v1.billing.meters.list(params={"status": "active", "limit": 100}).auto_paging_iter():
            if found.event_name == meter.event_name:
                return found.id
        params: MeterCreateParams = {
            "display_name": meter.display_name[:250],
            "event_name": meter.event_name,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        }
        created = self.client.v1.billing.meters.create(
            params=params, options={"idempotency_key": f"{idempotency_key}:meter"}
        )
        return created.id

    def create_checkout_session(self, checkout: CheckoutRequest, *, idempotency_key: str) -> CheckoutSession:
        params: SessionCreateParams = {
            "mode": "subscription",
            "customer": checkout.customer_billing_id,
            "line_items": [
                {"price": i.price_billing_id, "quantity": i.quantity}
                if i.quantity is not None
                else {"price": i.price_billing_id}  # metered: billed from the reported usage
                for i in priced_items(
                    self.client,
                    checkout.items,
                    checkout.metadata.get("entitleSubscriptionId", ""),
                    idempotency_key=idempotency_key,
                )
            ],
            "success_url": checkout.success_url,
            "metadata": checkout.metadata,
            "subscription_data": {"metadata": checkout.metadata},
            "allow_promotion_codes": checkout.allow_promo_codes,
            "billing_address_collection": "required" if checkout.collect_billing_address else "auto",
        }
        if checkout.cancel_url:
            params["cancel_url"] = checkout.cancel_url
        if checkout.coupon_billing_id:
            # Stripe takes a discount or promotion codes on a session, not both: the coupon wins.
            promotion = checkout.promotion_code_billing_id
            params["discounts"] = [
                {"promotion_code": promotion} if promotion else {"coupon": checkout.coupon_billing_id}
            ]
            del params["allow_promotion_codes"]
        if checkout.collect_tax_id:
            # Stripe records the collected tax id on the customer only when it may update its name.
            params["tax_id_collection"] = {"enabled": True}
            params["customer_update"] = {"name": "auto", "address": "auto"}
        if checkout.collect_phone_number:
            params["phone_number_collection"] = {"enabled": True}
        if checkout.client_reference_id:
            params["client_reference_id"] = checkout.client_reference_id
        if checkout.expires_at is not None:
            params["expires_at"] = int(checkout.expires_at.timestamp())
        if self.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
            params.setdefault("customer_update", {})["address"] = "auto"
        session = self.client.v1.checkout.sessions.create(
            params=params, options={"idempotency_key": f"{idempotency_key}:checkout"}
        )
        if not session.url:
            raise RuntimeError(f"Stripe returned checkout session {session.id} without a URL")
        return CheckoutSession(id=session.id, url=session.url)

    def create_portal_session(
        self, customer_billing_id: str, return_url: str, *, idempotency_key: str, configuration: str | None = None
    ) -> str:
        params: Any = {"customer": customer_billing_id, "return_url": return_url}
        if configuration:
            params["configuration"] = configuration
        session = self.client.v1.billing_portal.sessions.create(
            params=params,
            options={"idempotency_key": f"{idempotency_key}:portal"},
        )
        return session.url

    def list_invoices(self, customer_billing_id: str, *, limit: int) -> list[ProviderInvoice]:
        page = self.client.v1.invoices.list(params={"customer": customer_billing_id, "limit": min(limit, 100)})
        found: list[ProviderInvoice] = []
        for invoice in page.auto_paging_iter():
            found.append(_invoice(invoice))
            if len(found) >= limit:
                break
        return found

    # -- webhooks from Stripe (entitle.billing.inbound) ---------------------------------------------------

    def handle_event(self, payload: bytes, signature: str | None) -> ProviderEvent | None:
        """Verify the `Stripe-Signature` header with the integration's webhook secret (the SDK's check,
        including its five-minute tolerance on the signed timestamp) and parse the event; None for an
        event type Entitle does not act on (see `HANDLED_EVENTS`)."""
        if not self.webhook_secret:
            raise FailedPrecondition(
                "the integration has no webhookSecret: connect it again with the endpoint's signing secret (whsec_...)"
            )
        try:
            stripe.WebhookSignature.verify_header(
                payload, signature, self.webhook_secret, stripe.Webhook.DEFAULT_TOLERANCE
            )
        except stripe.SignatureVerificationError as exc:
            raise InvalidSignature(f"the Stripe-Signature header does not verify: {exc.user_message or exc}") from None
        except UnicodeDecodeError:
            raise InvalidSignature("the event body is not UTF-8, so it cannot carry a valid signature") from None
        try:
            event = json.loads(payload)
        except ValueError:
            raise InvalidArgument("the event body is not JSON") from None
        data = event.get("data") if isinstance(event, dict) else None
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str)
            or not isinstance(data, dict)
            or not isinstance(data.get("object"), dict)
        ):
            raise InvalidArgument("the body is not a Stripe event (id, type and data.object)")
        if event["type"] not in HANDLED_EVENTS:
            return None
        return ProviderEvent(id=event["id"], type=event["type"], data=event)

    def create_credit_invoice(
        self, spec: CreditInvoiceSpec, *, idempotency_key: str, still_wanted: Callable[[], bool] | None = None
    ) -> ProviderInvoice:
        return create_credit_invoice(self.client, spec, idempotency_key, still_wanted)

    def void_invoice(self, invoice_id: str, *, idempotency_key: str) -> ProviderInvoice:
        return void_invoice(self.client, invoice_id, idempotency_key)

    def find_credit_invoice(
        self, customer_billing_id: str, environment_ref: str, grant_ref: str, *, made_since: datetime
    ) -> ProviderInvoice | None:
        found = credit_invoice_made(self.client, customer_billing_id, environment_ref, grant_ref, made_since)
        return None if found is None or found.status == "draft" else _invoice(found)

    def mark_latest_invoice_paid(self, subscription_billing_id: str, *, idempotency_key: str) -> str:
        try:
            return mark_latest_invoice_paid(self.client, subscription_billing_id, idempotency_key)
        except stripe.StripeError as exc:
            raise _waited_for("marking the invoice paid", exc) from exc

    def subscription_status(self, billing_id: str) -> str | None:
        return str(self.client.v1.subscriptions.retrieve(billing_id).status)

    # -- calls a request waits for (short timeout; errors become 4xx or 503) -------------------------------

    def check_account(self) -> ProviderAccount:
        try:
            account = self.client.v1.accounts.retrieve_current()
        except stripe.PermissionError:
            account = None  # a restricted key may not read the account: it is still the key's account
        except stripe.StripeError as exc:
            raise _waited_for("reading the account", exc) from exc
        missing = self._missing_permissions()
        if account is None:
            return ProviderAccount(id="", name=None, missing_permissions=missing)
        raw: dict[str, Any] = account.to_dict()
        settings = raw.get("settings") or {}
        profile = raw.get("business_profile") or {}
        name = (settings.get("dashboard") or {}).get("display_name") or profile.get("name")
        return ProviderAccount(id=str(account.id), name=name, missing_permissions=missing)

    def _missing_permissions(self) -> tuple[str, ...]:
        """The permissions of `REQUIRED_PERMISSIONS` whose read Stripe refuses with a permission error."""
        missing: list[str] = []
        for name, path in REQUIRED_PERMISSIONS:
            try:
                self.client.raw_request("get", path, limit=1)
            except stripe.PermissionError:
                missing.append(name)
            except stripe.StripeError as exc:
                raise _waited_for("checking the key's permissions", exc) from exc
        return tuple(missing)

    def ensure_portal_configuration(self, existing_id: str | None, metadata: dict[str, str]) -> str | None:
        params: Any = {"features": RECOMMENDED_PORTAL_FEATURES, "metadata": metadata}
        try:
            if existing_id:
                try:
                    return str(self.client.v1.billing_portal.configurations.update(existing_id, params=params).id)
                except stripe.InvalidRequestError as exc:
                    if exc.http_status != 404:
                        raise  # deleted at Stripe: a new one is made below
            return str(self.client.v1.billing_portal.configurations.create(params=params).id)
        except stripe.StripeError as exc:
            raise _waited_for("the billing portal configuration", exc) from exc

    def payment_method(self, payment_method_id: str) -> PaymentMethodDetails:
        return stripe_customer_details.payment_method(self.client, payment_method_id)

    def set_default_payment_method(
        self, customer_billing_id: str, payment_method_id: str, *, idempotency_key: str
    ) -> None:
        self.client.v1.customers.update(
            customer_billing_id,
            params={"invoice_settings": {"default_payment_method": payment_method_id}},
            options={"idempotency_key": f"{idempotency_key}:default-payment-method"},
        )

    def apply_billing_details(self, customer_billing_id: str, details: BillingDetails, *, idempotency_key: str) -> None:
        stripe_customer_details.apply_billing_details(
            self.client, customer_billing_id, details, idempotency_key=idempotency_key
        )

    def find_promotion_code(self, code: str) -> PromotionCode | None:
        return stripe_customer_details.find_promotion_code(self.client, code)

    def tax_rate_for(self, percentage: Decimal, *, idempotency_key: str) -> str:
        return stripe_customer_details.tax_rate_for(self.client, percentage, idempotency_key=idempotency_key)
