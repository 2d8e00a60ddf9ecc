"""Cache backends: the SQLite file shared by processes, Redis when available, and the local math."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from entitle.catalog.packages.allowance import Allowance
from entitle.entitlements import rules as server_rules
from entitle.sdk import Entitle, MemoryCache, Source, SQLiteFileCache
from entitle.sdk.cache import CacheBackend
from entitle.sdk.state import Entry, decide
from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]

OTHER_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[4])
    from entitle.sdk import Entitle, SQLiteFileCache
    from tests.sdk.conftest import CountingTransport

    key, base, path = sys.argv[1:4]
    transport = CountingTransport()
    with Entitle(key, base, push=False, cache_backend=SQLiteFileCache(path), transport=transport,
                 cache_ttl=3600) as client:
        read = client.get_entitlement("c1", "calls", requested_usage=1)
        requests_for_read = transport.total
        client.report_usage("c1", "calls", 2)
        print(json.dumps({"source": read.source.value, "usage": str(read.current_usage),
                          "requests": requests_for_read}))
    """
)


def test_a_sqlite_file_cache_is_shared_by_two_processes(seeded: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "entitle-cache.db"
    key = seeded.key()
    # An hour's TTL: this is about sharing the file between processes, not expiry, and a loaded machine can
    # take longer than the default 30 s between the first read and the last.
    with Entitle(key, seeded.base_url, push=False, cache_backend=SQLiteFileCache(path), cache_ttl=3600) as first:
        first.report_usage("c1", "calls", 3)
        assert first.get_entitlement("c1", "calls").current_usage == 3
        out = subprocess.run(
            [sys.executable, "-c", OTHER_PROCESS, key, seeded.base_url, str(path), str(ROOT)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        # The other process answered from the file, without a request, with this process's usage.
        assert seen == {"source": "CACHE", "usage": "3", "requests": 0}
    # Its report went through the file too: a new client here sees 5 without asking the server.
    with Entitle(key, seeded.base_url, push=False, cache_backend=SQLiteFileCache(path), cache_ttl=3600) as third:
        result = third.get_entitlement("c1", "calls")
        assert (result.source, result.current_usage) == (Source.CACHE, Decimal(5))


def _exercise(backend: CacheBackend) -> None:
    backend.set("ns:a", "1")
    backend.set("ns:b%_", "2")
    backend.set("other:a", "3")
    backend.set("ns:a", "4")
    assert backend.get("ns:a") == "4"
    backend.delete("ns:a")
    assert backend.get("ns:a") is None
    backend.clear("ns:")
    assert backend.get("ns:b%_") is None
    assert backend.get("other:a") == "3"


def test_memory_and_sqlite_backends_behave_alike(tmp_path: Path) -> None:
    _exercise(MemoryCache())
    _exercise(SQLiteFileCache(tmp_path / "c.db"))


def test_redis_backend(redis_url: str) -> None:
    """Against a real, throwaway redis-server (the `redis_url` fixture), through the `redis` package
    (a dev dependency; RedisCache imports it lazily, it is not a dependency of the SDK)."""
    import redis

    from entitle.sdk import RedisCache

    _exercise(RedisCache(redis_url))
    client = redis.Redis.from_url(redis_url)
    _exercise(RedisCache(client=client))
    client.flushdb()


def test_a_redis_cache_is_shared_by_clients(seeded: LiveServer, redis_url: str) -> None:
    """Two clients with separate memories (as two processes would have) share what either fetched
    or reported through one Redis: the second answers without a request."""
    from entitle.sdk import RedisCache
    from tests.sdk.conftest import CountingTransport

    key = seeded.key()
    with Entitle(key, seeded.base_url, push=False, cache_backend=RedisCache(redis_url)) as first:
        first.report_usage("c1", "calls", 3)
        assert first.get_entitlement("c1", "calls").current_usage == 3
    transport = CountingTransport()
    backend = RedisCache(redis_url)
    with Entitle(key, seeded.base_url, push=False, cache_backend=backend, transport=transport) as second:
        result = second.get_entitlement("c1", "calls", requested_usage=1)
        assert (result.source, result.current_usage, result.is_granted) == (Source.CACHE, Decimal(3), True)
        assert transport.total == 0
    backend.clear("")


def test_the_sdk_imports_none_of_the_server() -> None:
    code = (
        "import sys, entitle.sdk; "
        "print(sorted(m for m in sys.modules if m.startswith('entitle') and not m.startswith('entitle.sdk')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "['entitle']"


amounts = st.decimals(min_value=0, max_value=1000, places=2)


@given(
    feature_type=st.sampled_from(["BOOLEAN", "NUMBER", "ENUM"]),
    metered=st.booleans(),
    limit=st.none() | amounts,
    unlimited=st.booleans(),
    soft=st.booleans(),
    enum=st.none() | st.frozensets(st.sampled_from("abcd")),
    current=amounts,
    requested=st.none() | amounts,
    values=st.none() | st.lists(st.sampled_from("abcde"), max_size=3),
)
def test_the_local_decision_is_the_servers(
    feature_type: str,
    metered: bool,
    limit: Decimal | None,
    unlimited: bool,
    soft: bool,
    enum: frozenset[str] | None,
    current: Decimal,
    requested: Decimal | None,
    values: list[str] | None,
) -> None:
    allowance = Allowance(usage_limit=limit, has_unlimited=unlimited, has_soft_limit=soft, enum_values=enum)
    meter = "INCREMENTAL" if metered else "None"
    server = server_rules.decide(
        feature_type, meter, allowance, current_usage=current, requested_usage=requested, requested_values=values
    )
    entry = Entry(
        feature_id="f",
        feature_type=feature_type,
        usage_limit=limit,
        has_unlimited=unlimited,
        has_soft_limit=soft,
        enum_values=enum,
        current_usage=current if metered else None,
        reset_period=None,
        period_start=None,
        period_end=None,
        valid_until=None,
        raw={},
    )
    reason = decide(entry, entry.current_usage, requested, values)
    assert (reason is None) == server.is_granted
    assert reason == (server.reason.value if server.reason else None)
