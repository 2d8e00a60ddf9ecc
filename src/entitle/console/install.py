"""Plugs the console into the application: its routes, static files, `/docs`, and HTML errors."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from entitle.console import (
    catalog_routes,
    coupon_routes,
    credit_routes,
    customer_routes,
    docs,
    integrations_routes,
    package_routes,
    plan_routes,
    product_routes,
    routes,
    settings_routes,
    subscription_routes,
    web,
    webhooks_routes,
)
from entitle.console.assets import STATIC


def install(app: FastAPI) -> None:
    app.include_router(routes.root_router)
    app.include_router(routes.router)
    app.include_router(customer_routes.router)
    app.include_router(subscription_routes.router)
    app.include_router(settings_routes.router)
    app.include_router(catalog_routes.router)
    app.include_router(plan_routes.router)
    app.include_router(package_routes.router)
    app.include_router(product_routes.router)
    app.include_router(coupon_routes.router)
    app.include_router(credit_routes.router)
    app.include_router(integrations_routes.router)
    app.include_router(webhooks_routes.router)
    app.include_router(docs.router)
    app.mount(STATIC, StaticFiles(directory=web.HERE / "static"), name="console-static")
    web.install(app)
