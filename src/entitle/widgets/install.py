"""Plugs the widgets into the application: their API routes, the ES module and the `/demo` page."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool

from entitle.http.deps import secret_box_of
from entitle.widgets import demo, routes

# Served as /widgets/v1/entitle.js (the file name differs so no string reads like a module path).
MODULE = Path(__file__).resolve().parent / "static" / "entitle-widgets.js"
MODULE_PATH = "/widgets/v1/entitle.js"
NOT_SERVED = (
    "<!doctype html><title>Not served</title><p>The widgets demo page is off: it hands every visitor a client "
    "key and a demo customer's token. Start the server with <code>ENTITLE_DEMO_PAGE=on</code> (as "
    "<code>make run</code> does) on a machine of your own to see it.</p>"
)


def install(app: FastAPI, demo_product_id: str) -> None:
    """`demo_product_id`: the demo catalog's product (the composition root's `catalog.demo`)."""
    app.include_router(routes.router)

    @app.get(MODULE_PATH, include_in_schema=False)
    def widgets_module() -> FileResponse:
        # Any page may load it (it holds no secret); a short cache keeps a fixed bug from lingering a day.
        return FileResponse(
            MODULE,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        )

    @app.get("/demo", include_in_schema=False)
    async def demo_page(request: Request) -> HTMLResponse:
        settings = request.app.state.settings
        if not settings.demo_page:
            return HTMLResponse(NOT_SERVED, status_code=404)
        db = request.app.state.db
        data_dir = settings.data_dir
        context = await run_in_threadpool(demo.demo_context, db, secret_box_of(request), data_dir, demo_product_id)
        return HTMLResponse(demo.render(context), headers={"Cache-Control": "no-store"})
