"""The `entitle` command run in this process (typer's CliRunner) the way `tests/test_cli.py`'s `run` runs
it as a subprocess: same environment (no inherited ENTITLE_/STIGG_ settings but the data dir and the
database), same answer (`returncode`, `stdout`, `stderr`).

A subprocess pays the interpreter and the import of the whole app (about 2 s of CPU) for every command;
a test that is about what a command does, not about the console script, runs it here. Each command group
keeps at least one test that runs the real console script (tests/test_cli.py, tests/test_cli_jobs.py, ...).

A command that crashes shows its traceback on `stderr` with exit status 1, as the real process would:
the tests' "no traceback" assertions keep their meaning.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path

from typer.testing import CliRunner

from entitle.cli import app
from entitle.secrets import ENV_VAR


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def invoke(
    *args: str,
    data_dir: Path,
    database_url: str | None = None,
    env: dict[str, str | None] | None = None,
    inherit: bool = False,
) -> Ran:
    """`entitle ARGS...` in-process with ENTITLE_DATA_DIR (and ENTITLE_DATABASE_URL, when given) set and,
    unless `inherit`, every other ENTITLE_/STIGG_ variable of this process unset for the command's
    duration; `env` adds to (a value) or removes from (None) that environment."""
    prefixes = ("ENTITLE_", "STIGG_")
    environ: dict[str, str | None] = {} if inherit else {k: None for k in os.environ if k.startswith(prefixes)}
    environ["ENTITLE_DATA_DIR"] = str(data_dir)
    if database_url is not None:
        environ["ENTITLE_DATABASE_URL"] = database_url
    environ.update(env or {})
    result = CliRunner().invoke(app, list(args), env=environ, catch_exceptions=True)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit) and result.exc_info:
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return Ran(returncode=result.exit_code, stdout=result.stdout, stderr=stderr)


def server_key(database_url: str, data_dir: Path) -> dict[str, str | None]:
    """The environment an operator gives the command line beside a live test server of `data_dir`: on
    PostgreSQL the server's secrets key as ENTITLE_SECRET_KEY (the commands that store secrets refuse a
    key in the data dir there, as `entitle serve` does); nothing on SQLite, where both read the data
    dir's key file."""
    from tests.support.server import secret_key_of

    return {} if database_url.startswith("sqlite") else {ENV_VAR: secret_key_of(data_dir)}
