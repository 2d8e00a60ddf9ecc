"""The admin console: server-rendered pages (Jinja2 + htmx) for the people who own pricing, billing
operations and support, with its own users, sessions and CSRF protection. Its handlers call the same
service functions as the API; the `/api/` routes know nothing of it."""
