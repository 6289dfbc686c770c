"""The local stack behind `kafkaml up`: embedded broker and PostgreSQL, supervised services.

The pieces are usable on their own; the test suite starts one broker and one
PostgreSQL per session through :func:`start_broker` and :func:`start_postgres`.
"""

from shared.process import Backoff
from shared.stack.broker import Broker, BrokerError, start_broker, start_broker_async
from shared.stack.postgres import EmbeddedPostgres, PostgresError, start_postgres, stop_postgres
from shared.stack.supervisor import ChildSpec, Supervisor

__all__ = [
    "Backoff",
    "Broker",
    "BrokerError",
    "ChildSpec",
    "EmbeddedPostgres",
    "PostgresError",
    "Supervisor",
    "start_broker",
    "start_broker_async",
    "start_postgres",
    "stop_postgres",
]
