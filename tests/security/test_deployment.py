"""Deployment safety that the other suites do not already pin: API keys compared in constant time,
and staff log-ins limited by address as well as by account.

Also relied on (not repeated here): `check --deploy --fail-level WARNING` with production
settings (tests/core/test_platform.py::test_the_deployment_check_passes_with_production_settings),
the refusal to start without real keys (same file), and the per-account staff lock-out
(tests/admin/test_console.py::test_five_failed_logins_lock_the_account_out_and_are_audited).
"""

from __future__ import annotations

import hmac

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from members import keys
from members.models import ApiKey

pytestmark = pytest.mark.django_db


def test_every_presented_key_is_checked_with_a_constant_time_comparison(bank_a, monkeypatch):
    calls: list[tuple[str, str]] = []
    compare = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    stored = ApiKey.objects.get(member=bank_a.member)
    assert bank_a.client.get("/api/v1/me").status_code == 200
    assert calls == [(keys.hash_key(bank_a.key), stored.key_hash)]

    # a key with a real prefix and a wrong secret goes through the same comparison, and fails
    calls.clear()
    forged = bank_a.key[:-1] + ("A" if bank_a.key[-1] != "A" else "B")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert client.get("/api/v1/me").status_code == 401
    assert calls == [(keys.hash_key(forged), stored.key_hash)]


def test_the_comparison_is_of_fixed_length_digests_never_of_the_key_itself(bank_a, monkeypatch):
    """Both sides are SHA-256 hex digests (64 characters) whatever was sent: the work done does
    not depend on where a guess first differs, nor on its length."""
    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(keys.hmac, "compare_digest", lambda a, b: seen.append((a, b)) or False)
    prefix = bank_a.key.split("_")[1]
    for secret in ("A" * 43, bank_a.key.split("_", 2)[2][:-1] + "Z", "-" * 43):
        Client(HTTP_AUTHORIZATION=f"Bearer cx_{prefix}_{secret}").get("/api/v1/me")
    assert len(seen) == 3
    assert all(len(a) == len(b) == 64 and bank_a.key not in (a, b) for a, b in seen)


def test_a_stored_key_hash_never_equals_or_contains_the_key(bank_a):
    stored = ApiKey.objects.get(member=bank_a.member)
    secret = bank_a.key.split("_", 2)[2]
    assert secret not in stored.key_hash and secret not in stored.prefix
    assert keys.key_matches(bank_a.key, stored.key_hash)
    assert not keys.key_matches(bank_a.key + "x", stored.key_hash)


def test_failed_staff_logins_from_one_address_lock_it_out_whatever_the_user_names(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only
    user = get_user_model().objects.create_user("olivia", password="a long passphrase 42", is_staff=True)
    client = Client(REMOTE_ADDR="203.0.113.9")
    statuses = [
        client.post("/admin/login/?next=/admin/", {"username": f"guess{i}", "password": "x"}).status_code
        for i in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}
    # now even the right password for a real account is refused from that address...
    right = {"username": user.username, "password": "a long passphrase 42"}
    assert client.post("/admin/login/?next=/admin/", right).status_code == 429
    # ...while another address may still log in
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert other.post("/admin/login/?next=/admin/", right).status_code == 302
