"""The REST gateway: validates requests, emits commands, waits for outcomes, reads PostgreSQL."""
