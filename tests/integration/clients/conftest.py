"""Prints the client compatibility table the tests measured at the end of the run."""

from __future__ import annotations

import pytest

TABLES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for table in TABLES:
        terminalreporter.section("Kafka clients against the embedded broker")
        terminalreporter.write_line(table)
