"""``kafkaml up``, ``up --detach``, ``down`` and ``status``: the local stack's commands.

- ``services``: the services ``up`` runs and the environment each may see;
- ``up``: start in order, supervise, stop in reverse; ``detach``: the same in the background;
- ``teardown``: ``down``; ``status_report``: ``status``; ``common``: what they share.
"""

from shared.stack.runner.common import (
    HEALTH_PATH,
    Echo,
    StackError,
    api_url,
    check_port_free,
    display_path,
    health,
    health_sync,
    read_or_create_secret,
    redact_url,
    resolve_home,
)
from shared.stack.runner.detach import up_detached
from shared.stack.runner.services import (
    ENV_PREFIX,
    PROJECT_ROOT,
    SECRET_SETTINGS,
    SERVICES,
    ServiceDef,
    is_secret_setting,
    service_env,
    settings_env,
)
from shared.stack.runner.status_report import status
from shared.stack.runner.teardown import down
from shared.stack.runner.up import READONLY_ROLE, ROLE_PASSWORD_FILE, run_up

__all__ = [
    "ENV_PREFIX",
    "HEALTH_PATH",
    "PROJECT_ROOT",
    "READONLY_ROLE",
    "ROLE_PASSWORD_FILE",
    "SECRET_SETTINGS",
    "SERVICES",
    "Echo",
    "ServiceDef",
    "StackError",
    "api_url",
    "check_port_free",
    "display_path",
    "down",
    "health",
    "health_sync",
    "is_secret_setting",
    "read_or_create_secret",
    "redact_url",
    "resolve_home",
    "run_up",
    "service_env",
    "settings_env",
    "status",
    "up_detached",
]
