"""Billing orchestration: provider integrations (Stripe), the links between Entitle entities and their
records at the provider, and the jobs that keep them in sync. Only this package talks to a provider."""
