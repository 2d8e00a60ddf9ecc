"""Entitle's Python server SDK: `Entitle` (sync) and `AsyncEntitle` (async).

Depends only on httpx and the standard library (never on the server's modules), so an application
can use it without the server. See docs/sdk.md.
"""

from entitle.sdk.aio import AsyncEntitle
from entitle.sdk.cache import CacheBackend, MemoryCache, RedisCache, SQLiteFileCache
from entitle.sdk.client import Entitle
from entitle.sdk.tokens import CUSTOMER_TOKEN_HEADER, customer_token
from entitle.sdk.types import (
    CreditBalance,
    CreditReservation,
    EntitleConnectionError,
    EntitleError,
    EntitlementResult,
    FallbackEntitlement,
    ReportedUsage,
    Source,
)

__all__ = [
    "CUSTOMER_TOKEN_HEADER",
    "AsyncEntitle",
    "CacheBackend",
    "CreditBalance",
    "CreditReservation",
    "Entitle",
    "EntitleConnectionError",
    "EntitleError",
    "EntitlementResult",
    "FallbackEntitlement",
    "MemoryCache",
    "RedisCache",
    "ReportedUsage",
    "SQLiteFileCache",
    "Source",
    "customer_token",
]
