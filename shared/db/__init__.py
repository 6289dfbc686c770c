"""The database layer: tables and repositories grouped by the service that writes them, the unit of work."""
