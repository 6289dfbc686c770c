"""The adaptive fetch wait: busy while records come, backing off to the idle wait, back at once."""

from __future__ import annotations

import inspect

import pytest
from aiokafka.consumer.fetcher import Fetcher

from shared.fetching import FetchWait, set_fetch_wait
from shared.kafka import fetch_wait_for
from shared.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def policy(clock: Clock, busy: int = 2, idle: int = 200) -> FetchWait:
    return FetchWait(busy, idle, busy_for_s=1.0, double_every_s=0.5, clock=clock)


def test_a_new_consumer_starts_busy_and_stays_busy_while_records_come() -> None:
    clock = Clock()
    wait = policy(clock)
    assert wait.wait_ms() == 2
    for _ in range(20):
        clock.now += 0.9  # a record less than busy_for_s after the last one
        assert wait.observe(1) == 2


def test_an_idle_consumer_doubles_its_wait_up_to_the_idle_wait() -> None:
    clock = Clock()
    wait = policy(clock)
    seen = []
    for _ in range(12):
        clock.now += 0.5
        seen.append(wait.observe(0))
    assert seen[:4] == [2, 4, 8, 16]  # busy for 1 s, then a doubling every 0.5 s
    assert seen == sorted(seen) and seen[-1] == 200 and max(seen) == 200


def test_a_record_or_a_wake_brings_the_busy_wait_back_at_once() -> None:
    clock = Clock()
    wait = policy(clock)
    clock.now += 60
    assert wait.observe(0) == 200
    assert wait.observe(3) == 2
    clock.now += 60
    assert wait.wait_ms() == 200
    wait.wake()
    assert wait.wait_ms() == 2


def test_a_consumer_idle_for_days_stays_at_the_idle_wait() -> None:
    clock = Clock()
    wait = policy(clock, busy=0, idle=500)
    clock.now += 10 * 86400
    assert wait.observe(0) == 500


def test_a_long_silence_takes_the_long_idle_wait_and_a_record_ends_it() -> None:
    clock = Clock()
    wait = FetchWait(2, 200, long_idle_ms=1000, long_idle_after_s=30.0, clock=clock)
    clock.now += 29.9
    assert wait.observe(0) == 200  # a pause between two clicks: the idle wait
    clock.now += 0.1
    assert wait.observe(0) == 1000
    clock.now += 10 * 86400
    assert wait.observe(0) == 1000
    assert wait.observe(1) == 2
    clock.now += 60
    wait.wake()  # an answer is due: busy again, whatever the silence before
    assert wait.wait_ms() == 2


def test_bad_bounds_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="idle_ms"):
        FetchWait(100, 10)
    with pytest.raises(ValueError, match="busy_ms"):
        FetchWait(-1, 10)
    with pytest.raises(ValueError, match="long_idle_ms"):
        FetchWait(10, 100, long_idle_ms=50)


def test_the_stack_policy_takes_its_bounds_from_the_settings_and_an_override() -> None:
    settings = Settings(fetch_max_wait_ms=5, fetch_idle_wait_ms=300, fetch_long_idle_wait_ms=900)
    stack = fetch_wait_for(settings)
    assert (stack.busy_ms, stack.idle_ms, stack.long_idle_ms) == (5, 300, 900)
    # A consumer that asks for a longer busy wait than the idle waits never goes below it.
    slow = fetch_wait_for(settings, 2000)
    assert (slow.busy_ms, slow.idle_ms, slow.long_idle_ms) == (2000, 2000, 2000)


def test_aiokafka_still_reads_the_wait_per_fetch_request() -> None:
    # shared.fetching sets Fetcher._fetch_max_wait_ms between polls: it works only while
    # aiokafka builds each FetchRequest from that attribute. An upgrade that changes it fails here.
    assert "self._fetch_max_wait_ms" in inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetch_max_wait_ms = fetch_max_wait_ms" in inspect.getsource(Fetcher.__init__)


def test_setting_the_wait_before_start_does_nothing_and_after_sets_the_fetcher() -> None:
    class Started:
        class _Fetch:
            _fetch_max_wait_ms = 10

        _fetcher = _Fetch()

    set_fetch_wait(object(), 50)  # no fetcher yet: nothing to set, no error
    started = Started()
    set_fetch_wait(started, 50)
    assert started._fetcher._fetch_max_wait_ms == 50


def test_faust_still_keeps_its_aiokafka_consumer_where_the_services_look() -> None:
    # shared.faust_app reaches the consumer as app.consumer._thread._consumer.
    from faust.transport.drivers import aiokafka as driver

    assert "self._thread" in inspect.getsource(driver.Consumer.__init__)
    assert hasattr(driver.AIOKafkaConsumerThread, "_consumer")
    assert "self._consumer = self._create_consumer(" in inspect.getsource(driver.AIOKafkaConsumerThread)
