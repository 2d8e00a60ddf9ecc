"""The Flow actions (our extension, docs/salesforce.md) and their OpenAPI 3.0 document."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from entitle.http.deps import DB, ServerKey
from entitle.http.wire import Envelope, envelope
from entitle.salesforce import openapi, service
from entitle.salesforce.schemas import (
    CustomerUpsert,
    FlowCreditGrant,
    FlowCreditGrantOut,
    FlowCustomerOut,
    FlowSubscriptionOut,
    FlowSubscriptionProvision,
)

router = APIRouter(prefix=openapi.PREFIX, tags=["salesforce"])


def _public_url(request: Request) -> str:
    """Where people reach this Entitle (ENTITLE_PUBLIC_URL): the console links a Flow writes back."""
    return str(request.app.state.settings.console_base_url)


PublicUrl = Annotated[str, Depends(_public_url)]
# A customer id as `POST /api/v1/customers` takes it (`RefId`), checked before the upsert builds one.
CustomerIdPath = Annotated[str, Path(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f]+$")]


@router.get("/openapi.json", include_in_schema=False)
def flow_actions_document(key: ServerKey, public_url: PublicUrl) -> dict[str, Any]:
    """Behind the key like every /api route: External Services fetches it through the Named Credential."""
    return openapi.document(public_url)


@router.put("/customers/{customer_id}", response_model=Envelope[FlowCustomerOut], operation_id="upsertCustomer")
def upsert_customer(
    customer_id: CustomerIdPath, body: CustomerUpsert, key: ServerKey, db: DB, public_url: PublicUrl
) -> dict[str, Any]:
    return envelope(service.upsert_customer(db, key.environment_id, customer_id, body, public_url))


@router.post("/subscriptions", response_model=Envelope[FlowSubscriptionOut], operation_id="provisionSubscription")
def provision_subscription(
    body: FlowSubscriptionProvision, key: ServerKey, db: DB, public_url: PublicUrl
) -> dict[str, Any]:
    return envelope(service.provision_subscription(db, key.environment_id, body, public_url))


@router.post("/credit-grants", response_model=Envelope[FlowCreditGrantOut], operation_id="createCreditGrant")
def create_credit_grant(body: FlowCreditGrant, key: ServerKey, db: DB, public_url: PublicUrl) -> dict[str, Any]:
    return envelope(service.grant_credits(db, key.environment_id, body, public_url))
