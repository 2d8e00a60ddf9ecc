"""`entitle salesforce ...`: the Flow actions' document for Salesforce External Services."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from entitle.config import load_settings
from entitle.salesforce import openapi

app = typer.Typer(help="Salesforce Flow actions (docs/salesforce.md).", no_args_is_help=True)


@app.command("openapi")
def write_openapi(
    public_url: Annotated[
        str | None, typer.Option(help="The base URL the document names (default: ENTITLE_PUBLIC_URL).")
    ] = None,
) -> None:
    """Print the OpenAPI 3.0 document of the Flow actions (`entitle salesforce openapi > entitle.json`)."""
    url = public_url or load_settings().console_base_url
    typer.echo(json.dumps(openapi.document(url), indent=2, sort_keys=False))
