from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from entitle.contracts import rules, service
from entitle.contracts.schemas import ContractCreate, ContractOut, ContractSubscriptionOut, ContractUpdate
from entitle.http.deps import DB, Paging, ServerKey, comma_list
from entitle.http.wire import Envelope, PageEnvelope, envelope, page_envelope

router = APIRouter(prefix="/api/v1/contracts", tags=["contracts"])
customers_router = APIRouter(prefix="/api/v1/customers", tags=["contracts"])


def contract_out(view: service.ContractView) -> ContractOut:
    contract = view.contract
    return ContractOut(
        id=contract.ref_id,
        contract_id=contract.ref_id,
        ref_id=contract.ref_id,
        external_id=contract.ref_id,
        customer_external_id=view.customer_ref,
        # As Stigg names it: the purchase-order number when set, else the contract's name, else the customer's.
        name=contract.po_number or contract.name or view.customer_ref,
        po_number=contract.po_number,
        activation_start_date=contract.activation_start_date,
        activation_end_date=contract.activation_end_date,
        created_at=contract.created_at,
        state=view.state,
        subscriptions=[
            ContractSubscriptionOut(
                subscription_id=m.sub.ref_id, plan_display_name=m.plan_name, product_display_name=m.product_name
            )
            for m in view.members
        ],
    )


@router.post("", response_model=Envelope[ContractOut])
def create_contract(body: ContractCreate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(contract_out(service.create_contract(db, key.environment_id, body)))


@router.get("", response_model=PageEnvelope[ContractOut])
def list_contracts(
    key: ServerKey,
    db: DB,
    page: Paging,
    customer_external_id: Annotated[str | None, Query(alias="customerExternalId", max_length=255)] = None,
    name: Annotated[str | None, Query(max_length=1024)] = None,
    state: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    states = comma_list(state, rules.STATES, name="state")
    result = service.list_contracts(
        db, key.environment_id, page, customer_ref=customer_external_id, name=name, states=states
    )
    return page_envelope(result, contract_out)


@router.get("/{contract_id}", response_model=Envelope[ContractOut])
def get_contract(contract_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(contract_out(service.get_contract(db, key.environment_id, contract_id)))


@router.patch("/{contract_id}", response_model=Envelope[ContractOut])
def update_contract(contract_id: str, body: ContractUpdate, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(contract_out(service.update_contract(db, key.environment_id, contract_id, body)))


@router.post("/{contract_id}/archive", response_model=Envelope[ContractOut])
def archive_contract(contract_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope(contract_out(service.archive_contract(db, key.environment_id, contract_id)))


@customers_router.get("/{customer_id}/contracts", response_model=Envelope[list[ContractOut]])
def customer_contracts(customer_id: str, key: ServerKey, db: DB) -> dict[str, Any]:
    return envelope([contract_out(view) for view in service.customer_contracts(db, key.environment_id, customer_id)])
