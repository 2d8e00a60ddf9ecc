"""The audit log: every write made through the API or the console, with its author (our extension)."""
