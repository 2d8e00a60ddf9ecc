"""`entitle users disable|enable|list` through typer's CliRunner, against the test's database (SQLite
and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from entitle.cli import app
from entitle.console import accounts
from entitle.db import Database
from tests.support.console import PASSWORD, make_user


def test_disable_and_enable_a_user_from_the_command_line(database_url: str, db: Database, tmp_path: Path) -> None:
    admin = make_user(db, "cli-admin@example.com", "admin")
    editor = make_user(db, "cli-editor@example.com", "editor")
    token, _ = accounts.sign_in(db, editor, PASSWORD)
    runner = CliRunner()
    env = {"ENTITLE_DATABASE_URL": database_url, "ENTITLE_DATA_DIR": str(tmp_path / "cli")}

    def users(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["users", *args], env=env)
        return result.exit_code, result.stdout, result.stderr

    assert users("disable", "--email", editor) == (0, f"disabled console user {editor}\n", "")
    assert accounts.session_of(db, token) is None  # its session ended with it
    assert f"{editor}\teditor\tdisabled" in users("list")[1].splitlines()
    code, out, err = users("disable", "--email", admin)
    assert (code, out) == (2, "") and err.startswith("Error: ") and "last enabled admin" in err
    assert users("enable", "--email", editor)[:2] == (0, f"enabled console user {editor}\n")
    assert accounts.sign_in(db, editor, PASSWORD)[1].email == editor
    assert users("enable", "--email", "nobody@example.com")[0] == 2
