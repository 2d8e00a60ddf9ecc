"""Console test helpers: users with known passwords, a signed-in httpx client, the page's CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from argon2 import PasswordHasher, Type

from entitle.console import accounts
from entitle.db import Database
from tests.support.http import SSL_CONTEXT

PASSWORD = "correct horse battery"
# argon2id at its lowest cost (one pass over 8 KiB, one lane): what the test session hashes console
# passwords with (tests/conftest.py, `_cheap_password_hashes`).
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(db: Database, email: str, role: str) -> str:
    accounts.create_user(db, email, role, PASSWORD)
    return email


def browser(base_url: str) -> httpx.Client:
    """A client that keeps cookies and does not follow redirects (tests look at them)."""
    return httpx.Client(base_url=base_url, timeout=30, verify=SSL_CONTEXT, follow_redirects=False)


def sign_in(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    """Post the sign-in form as a browser does: with the token of the form it was shown."""
    token = csrf_of(client, "/console/login")
    return client.post("/console/login", data={"email": email, "password": password, "csrf_token": token})


@contextmanager
def signed_in(base_url: str, email: str, password: str = PASSWORD) -> Iterator[httpx.Client]:
    with browser(base_url) as client:
        answer = sign_in(client, email, password)
        assert answer.status_code == 303, answer.text
        yield client


def csrf_of(client: httpx.Client, path: str = "/console") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = _CSRF.search(page.text)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)
