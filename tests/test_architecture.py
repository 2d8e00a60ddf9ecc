"""The layer rule holds on the real source, and the check itself catches what it must."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import layers

ROOT = Path(__file__).resolve().parents[1] / "src" / "entitle"


@pytest.fixture(scope="module")
def source() -> dict[str, str]:
    return layers.sources(ROOT)


def test_every_package_has_a_place_and_imports_point_down(source: dict[str, str]) -> None:
    report = layers.check(source)
    assert report.unplaced == [], f"packages missing from tests/support/layers.py LAYERS: {report.unplaced}"
    assert report.upward == [], "\n".join(report.upward)
    assert report.cycles == [], f"import cycles between packages: {report.cycles}"
    assert report.banned == [], "\n".join(report.banned)


def test_a_back_import_inside_a_function_is_named(source: dict[str, str]) -> None:
    patched = dict(source)
    patched["entitle.customers.service"] += (
        "\n\ndef _sneaky() -> None:\n    from entitle.billing import store  # noqa\n"
    )
    report = layers.check(patched)
    assert any(line.startswith("customers -> billing: entitle.customers.service:") for line in report.upward)
    assert ["billing", "customers"] in [sorted(c)[:2] for c in report.cycles] or any(
        {"billing", "customers"} <= set(c) for c in report.cycles
    )


def test_a_cycle_is_named_even_between_peers() -> None:
    report = layers.check(
        {
            "entitle.webhooks.emit": "from entitle.push import service\n",
            "entitle.push.service": "import entitle.webhooks.emit\n",
        }
    )
    assert report.cycles == [["push", "webhooks"]]
    assert len(report.upward) == 2 and all("peer" in line for line in report.upward)


def test_module_lookups_by_name_are_refused_or_counted() -> None:
    report = layers.check(
        {
            "entitle.catalog.features.service": (
                "import importlib\n"
                "import sys\n"
                "def f():\n"
                "    importlib.import_module('entitle.subscriptions.service')\n"
                "    __import__('entitle.billing')\n"
                "    return sys.modules['entitle.webhooks']\n"
            ),
            "entitle.jobs.service": "import logging\nlog = logging.getLogger('entitle.billing')\n",
        }
    )
    assert any("imports importlib" in b for b in report.banned)
    assert any("__import__" in b for b in report.banned)
    assert any("sys.modules" in b for b in report.banned)
    # The names themselves count as references: a string naming a higher layer is an upward import.
    assert any(line.startswith("catalog.features -> subscriptions") for line in report.upward)
    assert any(line.startswith("catalog.features -> billing") for line in report.upward)
    # A logger's name is not a module lookup.
    assert not any(line.startswith("jobs ->") for line in report.upward)


def test_the_sdk_and_the_server_never_import_each_other() -> None:
    report = layers.check({"entitle.sdk.client": "from entitle.entitlements import rules\n"})
    assert report.upward and "SDK" in report.upward[0]


def test_the_server_never_imports_the_development_tools_nor_localstripe() -> None:
    """`entitle_devtools` (the Stripe emulator, an optional development extra) sits outside the layers:
    nothing in `entitle` imports it, and nothing anywhere under src imports localstripe (GPL-3.0), which
    the emulator runs as its own process."""
    src = ROOT.parent
    for path in src.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith("localstripe"), f"{path} imports {name}"
                if path.is_relative_to(ROOT):
                    assert not name.startswith("entitle_devtools"), f"{path} imports {name}"
