"""Exports the message schemas as JSON Schema files (a public contract).

python -m shared.events.schemas          # rewrites shared/events/schemas/
"""

from __future__ import annotations

import json
from pathlib import Path

from shared.events import MESSAGE_ADAPTER
from shared.events.signing import header_schema

SCHEMA_DIR = Path(__file__).with_name("schemas")


def render() -> dict[str, str]:
    """File name → JSON text of every schema file."""
    schema = MESSAGE_ADAPTER.json_schema(mode="validation")
    return {
        "messages.schema.json": json.dumps(schema, indent=2, sort_keys=True) + "\n",
        # The header every message carries (shared.events.signing; docs/contracts.md, Signing).
        "signature.schema.json": json.dumps(header_schema(), indent=2, sort_keys=True) + "\n",
    }


def main() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, text in render().items():
        (SCHEMA_DIR / name).write_text(text)
        print(f"wrote {SCHEMA_DIR / name}")


if __name__ == "__main__":
    main()
