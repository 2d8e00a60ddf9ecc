"""Entitle: entitlements, subscriptions and billing orchestration."""

__version__ = "0.1.0"
