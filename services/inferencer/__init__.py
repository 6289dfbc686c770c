"""The inferencer service (arrives with a later issue)."""
