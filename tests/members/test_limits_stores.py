"""The two stores of members/counters.py behave alike: a hit answers its bucket's count and the
sum of the buckets before it in one round trip (one SQL statement; one Redis pipeline), a refusal
is taken back, and each ended minute's flood count is handed out once. The Redis store runs
against a real redis-server of its own (skipped, saying so, where none is installed)."""

from __future__ import annotations

import pytest
from django.db import connection
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


def test_each_ended_minute_of_a_flood_is_handed_out_once(store):
    for _ in range(3):
        store.flood("flood|a|b|m|X", 50, 3000)
    assert store.flood("flood|a|b|m|X", 51, 3060) == 1
    assert store.flood_ended(51) == [("flood|a|b|m|X", 50, 3)]
    assert store.flood_ended(51) == []
    assert store.flood_ended(52) == [("flood|a|b|m|X", 51, 1)]


def test_the_database_store_checks_a_limit_in_one_statement(db):
    store = counters.DatabaseStore()
    store.hit("warm", 1, 6, EXPIRES)
    with CaptureQueriesContext(connection) as queries:
        store.hit("k", 10, 6, EXPIRES)
    assert len(queries) == 1


def test_the_database_store_sweeps_expired_buckets_but_not_unsummarised_floods(db):
    store = counters.DatabaseStore()
    store.hit("old", 1, 0, 1000)
    store.hit("new", 1, 0, EXPIRES)
    store.flood("flood|a|b|m|X", 1, 0)
    assert store.sweep(2000) == 1
    assert store.flood_ended(2) == [("flood|a|b|m|X", 1, 1)]
