"""Real-time push: the change log behind the SSE stream (`GET /api/v1/stream`)."""
