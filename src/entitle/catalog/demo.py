"""The demo catalog loaded by `make run` (placeholder until plans land)."""

from __future__ import annotations

from entitle.config import Settings
from entitle.db import Database
from entitle.environments.models import KeyKind
from entitle.environments.service import create_key


def load_demo(db: Database, settings: Settings, environment: str) -> str:
    key_file = settings.data_dir / f"demo-{environment}-server-key"
    if key_file.exists():
        return key_file.read_text().strip()
    key = create_key(db, environment, KeyKind.SERVER)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    return key
