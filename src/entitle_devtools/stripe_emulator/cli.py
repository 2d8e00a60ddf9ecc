"""`entitle-stripe-emulator`: Stripe on a laptop, in one command (docs/stripe.md, "Stripe on your laptop").

Starts localstripe (its own process) and the stand-in on 127.0.0.1, connects an environment of the Entitle
database of this shell (`ENTITLE_DATABASE_URL` / `ENTITLE_DATA_DIR`, as `entitle serve` reads them) to it with
`entitle integrations connect stripe --api-base ...` and a fresh webhook signing secret, and sends Stripe's
webhooks — localstripe's and the stand-in's (a paid hosted checkout) — to that integration's endpoint on the
running Entitle server. Runs until interrupted (Ctrl-C); then both stop and the emulated account is gone.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx

from entitle_devtools.stripe_emulator.emulator import StripeEmulator, loopback_socket, running_emulator
from entitle_devtools.stripe_emulator.wire import TEST_SECRET_KEY


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="entitle-stripe-emulator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=12111, help="the emulated Stripe API's port (default 12111)")
    parser.add_argument("--environment", default="development", help="the environment to connect (development)")
    parser.add_argument(
        "--entitle-url", default="http://127.0.0.1:8000", help="the Entitle server that receives the webhooks"
    )
    parser.add_argument("--no-connect", action="store_true", help="only run the emulator; connect nothing")
    return parser


def connect(emulator: StripeEmulator, environment: str, entitle_url: str) -> str:
    """Connect `environment` to the emulator through Entitle's own CLI; route both webhook sources to it."""
    webhook_secret = f"whsec_{secrets.token_hex(24)}"
    command = [
        sys.executable,
        "-m",
        "entitle",
        "integrations",
        "connect",
        "stripe",
        "--environment",
        environment,
        "--secret-key",
        TEST_SECRET_KEY,
        "--api-base",
        emulator.api_base,
        "--webhook-secret",
        webhook_secret,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy())
    if done.returncode != 0:
        raise SystemExit(f"entitle integrations connect failed ({done.returncode}): {done.stderr.strip()}")
    integration = done.stdout.strip().splitlines()[-1]
    endpoint = f"{entitle_url.rstrip('/')}/api/v1/integrations/{integration}/webhooks/stripe"
    emulator.standin.webhook_endpoints[:] = [(endpoint, webhook_secret)]
    body = {"url": endpoint, "secret": webhook_secret}
    httpx.post(f"{emulator.localstripe_base}/_config/webhooks/entitle", json=body, timeout=10).raise_for_status()
    return integration


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if importlib.util.find_spec("localstripe") is None:  # looked up, not imported: it runs in its own process
        print("localstripe is not installed: pip install 'entitle[stripe-emulator]'", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="entitle-stripe-emulator-") as logs:
        try:
            sock = loopback_socket(args.port)
        except OSError as exc:
            print(f"port {args.port} is taken ({exc}): pass another with --port", file=sys.stderr)
            return 2
        with running_emulator(Path(logs), sock=sock) as emulator:
            print(f"Stripe emulator: {emulator.api_base} (secret key {TEST_SECRET_KEY})", flush=True)
            if not args.no_connect:
                integration = connect(emulator, args.environment, args.entitle_url)
                print(f"Connected environment '{args.environment}': integration {integration}", flush=True)
                print(f"Webhooks go to {emulator.standin.webhook_endpoints[0][0]}", flush=True)
            print("Ready. Ctrl-C stops the emulator (its objects are forgotten).", flush=True)
            stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
