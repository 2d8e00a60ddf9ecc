"""Credit consumptions and currency checks over real HTTP, driven by wrk, beside a constant async route.

    .venv/bin/python bench/credits.py [--database sqlite|postgresql] [--duration SECONDS]

Needs wrk (Debian: `apt-get install wrk`); without it, says so and exits 2 (it installs nothing).

The harness of entitlement_checks.py (a fresh database, Entitle under uvicorn, one worker, in a child
process with the constant async route mounted on that instance only). Seeds one custom currency and 50
customers, each with three grants of different priorities and expiries (so a consumption sorts and draws
on several). wrk's Lua script rotates over the customers:

- POST /api/v1/credits/consumption (amount 1, a new idempotency key each time: every request writes)
- GET /api/v1/customers/{c}/entitlements/check?currencyId=credits&requestedUsage=N (the CREDIT result; from
  the snapshot)
- GET /api/v1/customers/{c}/entitlements/check?featureId=calls&requestedUsage=N: a feature priced at one
  credit a unit on the customer's plan (the FEATURE result, decided on the balance; from the snapshot)
- the constant async route

Each at 1 and 16 connections, one wrk thread. Prints requests/s, p50 and p99 (ms) and the ratio to the
constant route measured in the same run; timing is reported, never asserted. Exits 1 if a request failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from catalog_reads import fresh_database, running_server
from entitlement_checks import CONSTANT_ASYNC_PATH, Figure, print_figures, serve, wrk

CUSTOMERS = 50
CONNECTIONS = (1, 16)


def seed(base: str, key: str) -> None:
    with httpx.Client(base_url=base, headers={"X-API-KEY": key}, timeout=60) as api:
        api.post(
            "/api/v1/credits/custom-currencies", json={"id": "credits", "displayName": "Credits"}
        ).raise_for_status()
        for n in range(CUSTOMERS):
            api.post("/api/v1/customers", json={"id": f"c{n}"}).raise_for_status()
            for priority, expire in ((10, "2099-01-01T00:00:00Z"), (50, None), (50, "2098-01-01T00:00:00Z")):
                grant = {
                    "customerId": f"c{n}",
                    "currencyId": "credits",
                    "amount": 10_000_000,
                    "displayName": "g",
                    "grantType": "PAID",
                    "priority": priority,
                }
                if expire is not None:
                    grant["expireAt"] = expire
                api.post("/api/v1/credits/grants", json=grant).raise_for_status()
        feature = {"id": "calls", "displayName": "Calls", "featureType": "NUMBER", "meterType": "INCREMENTAL"}
        api.post("/api/v1/features", json=feature).raise_for_status()
        api.post("/api/v1/products", json={"id": "app", "displayName": "App"}).raise_for_status()
        api.post("/api/v1/plans", json={"id": "ai", "displayName": "AI", "productId": "app"}).raise_for_status()
        entitlement = {"type": "FEATURE", "id": "calls", "hasUnlimitedUsage": True}
        api.post("/api/v1/plans/ai/entitlements", json={"entitlements": [entitlement]}).raise_for_status()
        rate = {"billingPeriod": "MONTHLY", "creditRate": {"amount": 1, "currencyId": "credits"}}
        priced = {"billingModel": "CREDIT_BASED", "featureId": "calls", "pricePeriods": [rate]}
        fee = {"billingPeriod": "MONTHLY", "price": {"amount": 10, "currency": "usd"}}
        flat = {"billingModel": "FLAT_FEE", "pricePeriods": [fee]}
        api.patch(
            "/api/v1/plans/ai", json={"charges": {"pricingType": "PAID", "pricingModels": [flat, priced]}}
        ).raise_for_status()
        api.post("/api/v1/plans/ai/publish", json={"migrationType": "NEW_CUSTOMERS"}).raise_for_status()
        for n in range(CUSTOMERS):
            api.post("/api/v1/subscriptions", json={"customerId": f"c{n}", "planId": "ai"}).raise_for_status()


LUA = """
local customers = {customers}
local n = 0
wrk.headers["X-API-KEY"] = "{key}"
wrk.headers["Content-Type"] = "application/json"

request = function()
  n = n + 1
  local c = n % customers
  if "{kind}" == "consume" then
    local body = '{{"customerId":"c' .. c .. '","currencyId":"credits","amount":1,'
      .. '"idempotencyKey":"{run}-' .. n .. '"}}'
    return wrk.format("POST", "/api/v1/credits/consumption", nil, body)
  elseif "{kind}" == "check" then
    local query = "?currencyId=credits&requestedUsage=" .. (n % 7 + 1)
    return wrk.format("GET", "/api/v1/customers/c" .. c .. "/entitlements/check" .. query)
  elseif "{kind}" == "feature" then
    local query = "?featureId=calls&requestedUsage=" .. (n % 7 + 1)
    return wrk.format("GET", "/api/v1/customers/c" .. c .. "/entitlements/check" .. query)
  end
  return wrk.format("GET", "{constant}")
end

done = function(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %d %d %d %d\\n", summary.requests, summary.duration,
      latency:percentile(50), latency:percentile(99), bad))
end
"""


def run_wrk(base: str, key: str, kind: str, connections: int, seconds: int, tmp: Path, run: str) -> Figure:
    script = tmp / f"{kind}-{run}.lua"
    script.write_text(LUA.format(customers=CUSTOMERS, key=key, kind=kind, constant=CONSTANT_ASYNC_PATH, run=run))
    return wrk(base, script, kind, connections, seconds)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2

    from entitle.db import Database
    from entitle.environments.models import KeyKind
    from entitle.environments.service import create_key

    figures: list[Figure] = []
    with fresh_database(args.database) as (url, data_dir), tempfile.TemporaryDirectory() as tmp:
        db = Database(url)
        key = create_key(db, "development", KeyKind.SERVER)
        db.dispose()
        with running_server(url, data_dir, script=__file__, startup_seconds=180) as base:
            seed(base, key)
            print(
                f"Entitle credits: {args.database}; {CUSTOMERS} customers x 3 grants; wrk, 1 thread, "
                f"{args.duration:g}s per figure; 1 uvicorn worker; {os.cpu_count()} CPUs shared by wrk and the "
                f"server; load average {os.getloadavg()[0]:.2f}"
            )
            for kind in ("consume", "check", "feature"):  # warm-up
                run_wrk(base, key, kind, 4, 1, Path(tmp), f"warm-{kind}")
            for connections in CONNECTIONS:
                for kind in ("constant", "consume", "check", "feature"):
                    run = f"{kind}-{connections}"
                    figures.append(run_wrk(base, key, kind, connections, args.duration, Path(tmp), run))
            print(f"load average after: {os.getloadavg()[0]:.2f}")

    print_figures(
        figures, {"consume": "consumption", "check": "currency check", "feature": "credit-priced feature check"}
    )
    return 1 if any(f.errors for f in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
