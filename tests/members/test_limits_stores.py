"""The two stores of members/counters.py behave alike: a hit answers its bucket's count and the
sum of the buckets before it in one round trip (one SQL statement; one Redis pipeline), a refusal
is taken back, and each ended minute's flood count is handed out once, with its first refusal, and
forgotten only when the caller's transaction commits. The Redis store runs
against a real redis-server of its own (skipped, saying so, where none is installed)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from members import counters
from tests.security.live import ThrowawayRedis, redis_available


@pytest.fixture(scope="module")
def redis_server():
    if not redis_available():
        pytest.skip("redis-server is not installed (Debian package redis-server): the Redis store is untested")
    server = ThrowawayRedis().start()
    yield server
    server.destroy()


@pytest.fixture(params=["database", "redis"])
def store(request, db, settings):
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        settings.CACHES = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url}
        }
        chosen = counters.store()
        assert isinstance(chosen, counters.RedisStore)
        chosen.clear()
        yield chosen
        chosen.clear()
    else:
        chosen = counters.store()
        assert isinstance(chosen, counters.DatabaseStore)
        yield chosen


EXPIRES = 4_000_000_000


def test_a_hit_answers_its_bucket_and_the_buckets_before_it(store):
    assert store.hit("k", 100, 3, EXPIRES) == counters.Hit(1, 0, None)
    assert store.hit("k", 100, 3, EXPIRES) == counters.Hit(2, 0, None)
    assert store.hit("k", 102, 3, EXPIRES) == counters.Hit(1, 2, 100)
    assert store.hit("k", 103, 3, EXPIRES, amount=5) == counters.Hit(5, 3, 100)
    assert store.hit("k", 104, 3, EXPIRES) == counters.Hit(1, 6, 102)  # bucket 100 is out of reach
    assert store.hit("other", 104, 3, EXPIRES) == counters.Hit(1, 0, None)  # keys apart


def test_a_refused_hit_is_taken_back(store):
    store.hit("k", 7, 0, EXPIRES, amount=3)
    store.undo("k", 7, amount=2)
    assert store.hit("k", 7, 0, EXPIRES).current == 2


def _ended(store, before_minute: int, **kwargs) -> list[counters.Flood]:
    """What one caller is handed, forgotten once its (here: empty) transaction commits."""
    with store.floods_ended(before_minute, **kwargs) as floods, transaction.atomic():
        pass
    return floods


def test_each_ended_minute_of_a_flood_is_handed_out_once_with_its_first_refusal(
    store, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert [store.flood("flood|b|m|X", 50, 3000, first=f"first {n}") for n in range(3)] == [1, 2, 3]
        assert store.flood("flood|b|m|X", 51, 3060, first="later") == 1
        assert _ended(store, 51) == [counters.Flood("flood|b|m|X", 50, 3, "first 0")]
        assert _ended(store, 51) == []
        assert _ended(store, 52) == [counters.Flood("flood|b|m|X", 51, 1, "later")]


def test_a_key_is_handed_out_alone(store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        for key in ("flood|b|a|10.0.0.1", "flood|b|a|10.0.0.10", "flood|b|a|10.0.0.1x"):
            store.flood(key, 50, 3000, first="{}")
        assert [f.key for f in _ended(store, 51, key="flood|b|a|10.0.0.1")] == ["flood|b|a|10.0.0.1"]
        assert sorted(f.key for f in _ended(store, 51)) == ["flood|b|a|10.0.0.10", "flood|b|a|10.0.0.1x"]


def test_a_minute_is_forgotten_only_when_its_transaction_commits(store, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        store.flood("flood|b|m|X", 50, 3000, first="{}")
        store.flood("flood|b|m|X", 50, 3000, first="{}")
        with pytest.raises(RuntimeError), store.floods_ended(51) as floods, transaction.atomic():
            assert [f.count for f in floods] == [2]
            raise RuntimeError("the commit failed")
        store.flood("flood|b|m|X", 50, 3000, first="{}")  # late, but still counted
        assert [f.count for f in _ended(store, 51)] == [3]
        assert _ended(store, 51) == []


def test_the_redis_store_hands_a_minute_to_one_caller_at_a_time(redis_server, settings, db):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_server.url}
    }
    store = counters.store()
    store.clear()
    store.flood("flood|b|m|X", 50, 3000, first="{}")
    with store.floods_ended(51) as taken:
        assert len(taken) == 1
        assert _ended(store, 51) == []  # claimed by the first caller
    store.clear()


def test_the_database_store_checks_a_limit_in_one_statement(db):
    store = counters.DatabaseStore()
    store.hit("warm", 1, 6, EXPIRES)
    with CaptureQueriesContext(connection) as queries:
        store.hit("k", 10, 6, EXPIRES)
    assert len(queries) == 1


def test_the_database_store_sweeps_expired_buckets_but_not_unwritten_floods(db):
    store = counters.DatabaseStore()
    store.hit("old", 1, 0, 1000)
    store.hit("new", 1, 0, EXPIRES)
    store.flood("flood|b|m|X", 1, 0, first="{}")
    assert store.sweep(10**9) == 1
    assert _ended(store, 2) == [counters.Flood("flood|b|m|X", 1, 1, "{}")]


def test_the_database_store_counts_a_refusal_in_one_statement_and_finds_a_keys_minutes_by_its_key(db):
    store = counters.DatabaseStore()
    store.flood("flood|b|m|W", 1, 0, first="{}")
    with CaptureQueriesContext(connection) as queries:
        store.flood("flood|b|m|X", 1, 0, first="{}")
    assert len(queries) == 1
    with CaptureQueriesContext(connection) as queries, store.floods_ended(2, key="flood|b|m|X"):
        pass
    (select,) = [q["sql"] for q in queries if q["sql"].startswith("SELECT")]
    assert "LIKE" not in select.upper() and '"key" = ' in select
