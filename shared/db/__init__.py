"""The database layer: tables, repositories that flush but never commit, the unit of work."""
