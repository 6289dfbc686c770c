"""``KAFKAML_BUS_KEY=… python -m shared.events.keys``: prints the validator's key
(``KAFKAML_VALIDATOR_KEY``) for deployments that set the keys themselves (compose, Kubernetes);
``kafkaml up`` derives it by itself."""

from __future__ import annotations

from shared.events.signing import validator_key
from shared.settings import Settings


def main() -> None:
    bus_key = Settings().bus_key
    if not bus_key:
        raise SystemExit("set KAFKAML_BUS_KEY: the validator's key is derived from it")
    print(validator_key(bus_key))


if __name__ == "__main__":
    main()
