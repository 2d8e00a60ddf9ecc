"""Where the vendored browser assets are served (see static/vendor/README.md for versions and licences)."""

from __future__ import annotations

STATIC = "/console/static"
HTMX_JS = f"{STATIC}/vendor/htmx-2.0.11/htmx.min.js"
SWAGGER_JS = f"{STATIC}/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js"
SWAGGER_CSS = f"{STATIC}/vendor/swagger-ui-5.35.0/swagger-ui.css"
CONSOLE_CSS = f"{STATIC}/console.css"
