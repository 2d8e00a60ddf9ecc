"""docs/stripe.md, "Stripe on your laptop", run as written: its setup, its two long-running commands (the
server and `entitle-stripe-emulator`) and its steps, in a fresh directory, on ports of this test's own
(8000 and 12111 in the text are replaced). The steps' output must be the documented output. SQLite only: it
is the laptop set-up the section documents (the storage behind it is tested on both databases elsewhere).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port

DOC = Path(__file__).resolve().parents[2] / "docs" / "stripe.md"
BIN = Path(sys.executable).parent


def blocks() -> dict[str, str]:
    """The fenced blocks of the walkthrough, by the name of the `<!-- walkthrough: NAME -->` before each."""
    section = DOC.read_text().split("## Stripe on your laptop", 1)[1].split("\n## ", 1)[0]
    found = dict(re.findall(r"<!-- walkthrough: (\w+) -->\n```\w+\n(.*?)```", section, re.S))
    assert set(found) == {"setup", "server", "emulator", "steps", "output"}, sorted(found)
    return found


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt a command started here (its own process group: the emulator's localstripe goes with it)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """The documented environment in a fresh directory, and the text with this test's ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENTITLE_", "STIGG_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    ports = {"8000": str(free_port()), "12111": str(free_port())}
    text = {name: re.sub(r"\b(8000|12111)\b", lambda m: ports[m.group(1)], body) for name, body in blocks().items()}
    yield env, text


def run_block(body: str, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    script = "set -euo pipefail\n" + body
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.emulator_only
def test_the_documented_walkthrough_runs_and_prints_what_the_doc_says(
    tmp_path: Path, shell: tuple[dict[str, str], dict[str, str]]
) -> None:
    env, text = shell
    # The setup's `pip install` is what made this checkout's venv; the rest runs as written.
    setup = "\n".join(line for line in text["setup"].splitlines() if not line.startswith("pip install"))
    exports = run_block(setup + "\nenv | grep ^ENTITLE_", tmp_path, env, 120)
    assert exports.returncode == 0, exports.stderr
    for line in exports.stdout.splitlines():
        name, _, value = line.partition("=")
        env[name] = value
    assert env["ENTITLE_EMBEDDED_WORKER"] == "off" and env["ENTITLE_DATA_DIR"].startswith(str(tmp_path))

    started: list[subprocess.Popen[bytes]] = []
    try:
        for name in ("server", "emulator"):
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            started.append(
                subprocess.Popen(
                    ["bash", "-c", "exec " + text[name].strip()],
                    cwd=tmp_path,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        server_url = re.search(r"http://127\.0\.0\.1:\d+", text["server"] + " " + text["steps"])
        assert server_url is not None
        deadline = time.monotonic() + 120
        while "Ready." not in (tmp_path / "emulator.log").read_text(errors="replace"):
            assert all(p.poll() is None for p in started), (tmp_path / "emulator.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "emulator.log").read_text()[-3000:]
            time.sleep(0.2)
        while True:
            try:
                httpx.get(server_url.group(0) + "/api/v1/plans", timeout=2)
                break
            except httpx.HTTPError:
                assert started[0].poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.2)

        done = run_block(text["steps"], tmp_path, env, 300)
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{(tmp_path / 'emulator.log').read_text()[-3000:]}"
        expected = text["output"].strip().splitlines()
        printed = done.stdout.strip().splitlines()
        assert len(printed) == len(expected), done.stdout
        for got, want in zip(printed, expected, strict=True):
            pattern = "^" + re.escape(want).replace(re.escape("..."), r"\S+") + "$"
            assert re.match(pattern, got), (got, want)
    finally:
        for proc in reversed(started):
            _stop(proc)
