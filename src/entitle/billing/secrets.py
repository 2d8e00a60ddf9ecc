"""Compatibility: the secret box moved to `entitle.secrets` (webhook secrets use it too)."""

from entitle.secrets import ENV_VAR, GENERATE_HINT, KEY_FILE, SecretBox, secret_box

__all__ = ["ENV_VAR", "GENERATE_HINT", "KEY_FILE", "SecretBox", "secret_box"]
