"""The metrics service (arrives with a later issue)."""
