"""README.md as a new user acts on it: its example runs as written against a live server and prints what its
comment says; every command, option and setting it lists exists."""

from __future__ import annotations

import contextlib
import io
import itertools
import re
from pathlib import Path
from typing import Any

import typer

from entitle.cli import app as cli_app
from tests.conftest import LiveServer

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_quick_start_has_exactly_two_commands() -> None:
    text = README.read_text()
    quick = text.split("## Quick start", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    assert [line.strip() for line in quick.strip().splitlines()] == ["make run", "make test"]


def test_readme_example_works_against_the_server(server: LiveServer) -> None:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    source = code.group(1)
    assert len(source.strip().splitlines()) <= 30
    source = source.replace('api_key="server-development-..."', f'api_key="{server.server_key}"')
    source = source.replace('base_url="http://127.0.0.1:8000"', f'base_url="{server.base_url}"')
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(source, "README.md", "exec"), {})
    assert out.getvalue().strip() == "True 3.0 10.0"


def _command(path: list[str]) -> Any:
    """The command `entitle PATH...` as typer builds it (its own click: groups have `commands`)."""
    command: Any = typer.main.get_command(cli_app)
    for word in path:
        sub = getattr(command, "commands", {}).get(word)
        assert sub is not None, f"README names `entitle {' '.join(path)}`: no `{word}` in {path}"
        command = sub
    return command


def test_every_command_and_option_the_readme_lists_exists() -> None:
    """The README's command table, checked against the `entitle` command itself: each command path, and
    each `--option` it names for it (alternatives such as `show|update` each)."""
    table = README.read_text().split("## Commands", 1)[1].split("Configuration comes from", 1)[0]
    checked = 0
    for row in table.splitlines():
        if not row.startswith("| `entitle "):
            continue
        group: list[str] = []
        for example in re.findall(r"`([^`]+)`", row.split(" | ")[0].replace("\\|", "|")):
            words = example.replace("[", " ").replace("]", " ").split()
            if words[0] == "entitle-stripe-emulator":
                continue
            # `list` after `entitle webhooks create ...` is a command of the same group
            words = words[1:] if words[0] == "entitle" else group[:1] + words
            path = []
            for word in words:
                if word.startswith("-") or not re.fullmatch(r"[a-z][a-z|-]*", word) or word in ("stripe",):
                    break
                path.append(word)
            group = path
            options = [w for w in words if w.startswith("--")]
            for alternatives in itertools.product(*(word.split("|") for word in path)):
                command = _command(list(alternatives))
                known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
                for option in options:
                    assert option in known, f"README: `entitle {' '.join(alternatives)} {option}`: not in {known}"
                checked += 1
    assert checked >= 20


def test_every_setting_the_readme_lists_is_read_by_entitle() -> None:
    table = README.read_text().split("Configuration comes from the environment", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(ENTITLE_[A-Z_]+)`", table))
    source = "\n".join(p.read_text() for p in (README.parent / "src" / "entitle").rglob("*.py"))
    read = set(re.findall(r"\"(ENTITLE_[A-Z_]+)\"", source))
    assert len(listed) >= 8
    assert listed <= read, f"README lists settings nothing reads: {sorted(listed - read)}"
