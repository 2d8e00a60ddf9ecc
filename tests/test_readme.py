"""README's example runs, as written, against a live server and prints what its comment says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

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
