"""Secrets encrypted at rest — billing provider keys, webhook signing secrets, customer-token signing
secrets — with Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`).

The key comes from `ENTITLE_SECRET_KEY` — one Fernet key, or several separated by commas to rotate
(the first encrypts, every one decrypts) — else from the file `ENTITLE_SECRET_KEY_FILE` names (same
format, one key a line or comma-separated), else from `<data dir>/secret.key`. A missing key file is
generated on first use with mode 0600.

The data-dir default is for the embedded SQLite database only: a key beside the data it encrypts is
copied by every backup of that data. On PostgreSQL every command that may encrypt or decrypt (`serve`,
`worker`, `demo`, `keys signing-secret`, `webhooks create`, `integrations connect`) refuses to run, before
it writes anything, without `ENTITLE_SECRET_KEY` or a key file outside the data dir (`require_key_for`);
`process_box`, the box of the process's own settings (migrations, sealed job payloads), refuses the same
way instead of making a data-dir key. Several machines sharing one PostgreSQL database must share the key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from entitle.config import Settings, load_settings
from entitle.db.database import make_private_dir
from entitle.errors import FailedPrecondition

ENV_VAR = "ENTITLE_SECRET_KEY"
FILE_ENV_VAR = "ENTITLE_SECRET_KEY_FILE"
KEY_FILE = "secret.key"
GENERATE_HINT = "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"

log = logging.getLogger("entitle.secrets")


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError:
            raise FailedPrecondition(
                f"{ENV_VAR} (or {FILE_ENV_VAR}'s file) must hold one or more comma-separated Fernet keys "
                f"(32 url-safe base64 bytes); make one with: {GENERATE_HINT}"
            ) from None

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise FailedPrecondition(
                f"a stored secret cannot be decrypted with the current key ({ENV_VAR}, {FILE_ENV_VAR} or the "
                f"data dir's {KEY_FILE} changed?); connect the integration again, give the webhook a new "
                "secret, or rotate the signing secret (entitle keys signing-secret --rotate)"
            ) from None


def _split(raw: str) -> list[bytes]:
    return [k.strip().encode() for k in raw.replace("\n", ",").split(",") if k.strip()]


def key_file_path(data_dir: Path) -> Path:
    named = os.environ.get(FILE_ENV_VAR, "").strip()
    return Path(named).expanduser().resolve() if named else data_dir / KEY_FILE


def secret_box(data_dir: Path) -> SecretBox:
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw:
        return SecretBox(_split(raw))
    return SecretBox(_split(_key_file(key_file_path(data_dir)).decode()))


def require_key_apart(data_dir: Path) -> None:
    """Refuse a key kept in the data dir: for a server database (PostgreSQL), whose backups and volumes
    are shared more widely than one machine's files, the key must live elsewhere."""
    if os.environ.get(ENV_VAR, "").strip():
        return
    path = key_file_path(data_dir)
    if os.environ.get(FILE_ENV_VAR, "").strip() and not path.is_relative_to(data_dir.resolve()):
        return
    raise FailedPrecondition(
        f"on PostgreSQL the key that encrypts stored secrets must not sit in the data dir ({data_dir}) next to "
        f"the data: set {ENV_VAR} (make one with: {GENERATE_HINT}) or {FILE_ENV_VAR} to a file outside the "
        "data dir, the same on every machine sharing the database"
    )


def require_key_for(settings: Settings) -> None:
    """`require_key_apart` on PostgreSQL; the embedded SQLite default (one machine) may keep its key in the
    data dir. A command checks this before it writes anything: a secret encrypted with a data-dir key on
    PostgreSQL is one `serve`, which refuses that key, could never read."""
    if not settings.is_sqlite:
        require_key_apart(settings.data_dir)


def process_box() -> SecretBox:
    """The box of this process's settings (`load_settings()`), refused on PostgreSQL with the key in the
    data dir (`require_key_for`) rather than made there: for code that may run outside the commands that
    check at their start, such as migrations under `entitle migrate`."""
    settings = load_settings()
    require_key_for(settings)
    return secret_box(settings.data_dir)


def _key_file(path: Path) -> bytes:
    if not path.exists():
        make_private_dir(path.parent)
        staging = path.parent / f".{path.name}.{os.getpid()}"
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
