"""What the tests' HTTP clients share within a process."""

from __future__ import annotations

import ssl

SSL_CONTEXT = ssl.create_default_context()
"""One for every test client of this process: building one (loading the CA bundle) costs ~20 ms of
CPU, which httpx spends on every client it creates unless given a context, though tests talk plain
http to their own servers. Pass it as `verify=SSL_CONTEXT`."""
