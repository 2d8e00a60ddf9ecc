"""Paywall data: what a pricing page needs, in one read (`GET /api/v1/paywall`)."""
