"""The hub's mapping of events to entities, its filters, and a slow page's bounded buffer."""

from __future__ import annotations

from services.api.hub import ABOUT, CLIENT_UPDATES, ENTITIES, NOT_ABOUT_AN_ENTITY, Filters, Update, decode_update
from services.api.live import Client
from shared import events


def test_every_event_on_the_events_topic_is_classified() -> None:
    on_events = {cls for cls in events.MESSAGE_TYPES if cls.topic == "events"}
    missing = on_events - set(ABOUT) - NOT_ABOUT_AN_ENTITY
    assert not missing, f"say which entity these events are about (services/api/hub.py): {missing}"
    for cls, (entity, field) in ABOUT.items():
        assert entity in ENTITIES
        payload = cls.model_fields["payload"].annotation
        assert field in getattr(payload, "model_fields", {}), f"{cls.__name__} has no {field}"


def test_a_large_payload_travels_without_its_detail() -> None:
    metrics = {f"metric_{i}": 0.5 for i in range(2000)}
    epoch = events.EpochCompleted(payload=events.EpochMetrics(result_id=4, epoch=1, train=metrics))
    (update,) = decode_update(epoch.to_bytes())
    assert (update.entity, update.id, update.kind, update.detail) == ("result", 4, "EpochCompleted", {})
    small = events.EpochCompleted(payload=events.EpochMetrics(result_id=4, epoch=1, train={"loss": 1.0}))
    assert decode_update(small.to_bytes())[0].detail["train"] == {"loss": 1.0}
    assert decode_update(b"{}") == []
    assert decode_update(None) == []
    rejected = events.CommandRejected(
        payload=events.Rejection(command_type="CreateModel", status=422, title="Invalid", detail="no")
    )
    assert decode_update(rejected.to_bytes()) == [], "not about an entity"


def update(entity: str, entity_id: int) -> Update:
    return Update(entity, entity_id, "Kind", 0.0, {})


def test_filters() -> None:
    assert Filters().wants(update("model", 1))
    one = Filters.of(["result"], [12])
    assert one.wants(update("result", 12))
    assert not one.wants(update("result", 13))
    assert not one.wants(update("model", 12))
    kinds = Filters.of(["model", "configuration"], [])
    assert kinds.wants(update("configuration", 99))
    assert not kinds.wants(update("inference", 1))


async def test_a_slow_page_loses_the_oldest_updates_only() -> None:
    page: Client[Update] = Client(CLIENT_UPDATES, Filters.of(["result"], []).wants)
    for i in range(3 * CLIENT_UPDATES):
        page.push([update("result", i), update("model", i)], at=float(i))
    found, at = await page.take()
    assert len(found) == CLIENT_UPDATES
    assert [u.id for u in found] == list(range(2 * CLIENT_UPDATES, 3 * CLIENT_UPDATES))
    assert at == 3 * CLIENT_UPDATES - 1
