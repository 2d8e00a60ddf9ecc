"""Secrets encrypted at rest — billing provider keys, webhook signing secrets — with Fernet
(AES-128-CBC + HMAC-SHA256, from `cryptography`).

The key comes from `ENTITLE_SECRET_KEY` — one Fernet key, or several separated by commas to rotate
(the first encrypts, every one decrypts) — or, when that is unset, from `<data dir>/secret.key`,
generated on first use with mode 0600. Several machines sharing one PostgreSQL database must share
the key: set `ENTITLE_SECRET_KEY` on each of them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from entitle.errors import FailedPrecondition

ENV_VAR = "ENTITLE_SECRET_KEY"
KEY_FILE = "secret.key"
GENERATE_HINT = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"

log = logging.getLogger("entitle.secrets")


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError:
            raise FailedPrecondition(
                f"{ENV_VAR} must be one or more comma-separated Fernet keys (32 url-safe base64 bytes); "
                f"make one with: {GENERATE_HINT}"
            ) from None

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise FailedPrecondition(
                f"a stored secret cannot be decrypted with the current key ({ENV_VAR} or the data dir's "
                f"{KEY_FILE} changed?); connect the integration again, or give the webhook a new secret"
            ) from None


def secret_box(data_dir: Path) -> SecretBox:
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw:
        return SecretBox([k.strip().encode() for k in raw.split(",") if k.strip()])
    return SecretBox([_key_file(data_dir)])


def _key_file(data_dir: Path) -> bytes:
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        staging = data_dir / f".{KEY_FILE}.{os.getpid()}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
        try:
            os.link(staging, path)  # atomic, and loses cleanly to a concurrent creator
            log.warning("generated %s to encrypt stored secrets; set %s to share it between machines", path, ENV_VAR)
        except FileExistsError:
            pass
        finally:
            staging.unlink(missing_ok=True)
    return path.read_bytes().strip()
