"""The environment facts (`entitle.environments.facts`) learn that a fact broke from the ORM's flush of
the rows that can break it. A Core or raw-SQL write to those tables skips the ORM's hooks, so a process
would go on believing, say, that an environment has no enabled webhook endpoint after one was enabled.
This guard reads the application's source (migrations excepted: they run before any process serves)
and refuses any write to those tables that is not an ORM flush; such a write must call `Fact.broken`
itself and be listed here with the reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "entitle"
WATCHED_MODELS = {"WebhookEndpoint", "Integration", "PackageEntitlement", "PackageCharge"}
WATCHED_TABLES = ("webhook_endpoints", "integrations", "package_entitlements", "package_charges")
RAW_WRITE = re.compile(
    r"\b(INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE|REPLACE\s+INTO)\s+\"?(" + "|".join(WATCHED_TABLES) + r")\b",
    re.IGNORECASE,
)
# (file relative to src/entitle, model or table): why the write keeps the facts true.
ALLOWED: dict[tuple[str, str], str] = {}


def _writes(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            callee = node.func
            name = (
                callee.id if isinstance(callee, ast.Name) else callee.attr if isinstance(callee, ast.Attribute) else ""
            )
            if name in {"insert", "update", "upsert"} and node.args:
                target = node.args[0]
                target_name = ast.unparse(target).split(".")[0]
                if target_name in WATCHED_MODELS:
                    found.append((target_name, node.lineno))
            if name in {"insert", "update"} and isinstance(callee, ast.Attribute):
                owner = ast.unparse(callee.value)
                if owner.endswith(".__table__") and owner.split(".")[0] in WATCHED_MODELS:
                    found.append((owner.split(".")[0], node.lineno))
            if name in {"bulk_insert_mappings", "bulk_update_mappings", "bulk_save_objects"} and node.args:
                target_name = ast.unparse(node.args[0]).split(".")[0]
                if target_name in WATCHED_MODELS:
                    found.append((target_name, node.lineno))
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = RAW_WRITE.search(node.value)
            if match:
                found.append((match.group(3), node.lineno))
    return found


def test_the_rows_that_break_an_environment_fact_are_written_only_through_the_orm() -> None:
    offending = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE).as_posix()
        if relative.startswith("migrations/"):
            continue
        for target, line in _writes(path):
            if (relative, target) not in ALLOWED:
                offending.append(f"{relative}:{line} writes {target} outside the ORM's flush")
    assert offending == [], "\n".join(offending)


def test_the_guard_sees_core_and_raw_writes(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from sqlalchemy import insert, update, text\n"
        "a = insert(PackageEntitlement).values(x=1)\n"
        "b = update(WebhookEndpoint).values(enabled=True)\n"
        "c = Integration.__table__.insert()\n"
        "d = text('UPDATE webhook_endpoints SET enabled = 1')\n"
        "e = text('insert or ignore into package_charges (id) values (1)')\n"
        "f = update(Customer).values(name='x')\n"
        "g = text('UPDATE customers SET name = 1')\n"
    )
    assert [target for target, _ in sorted(_writes(sample), key=lambda found: found[1])] == [
        "PackageEntitlement",
        "WebhookEndpoint",
        "Integration",
        "webhook_endpoints",
        "package_charges",
    ]
