"""Limits by persona: a member's request rate and 24-hour quotas (429 throttled / quota_exceeded with
Retry-After), a member's own limits (set_member_limits), failed authentications per client address
(a valid key from the same address still works), and refusals audited aggregated, per minute.

The cross-process proof (two gunicorn workers, database and Redis stores) is
tests/security/test_limits_live.py; the stores themselves, tests/members/test_limits_stores.py."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import RequestFactory
from rest_framework.test import APIClient

from audit.models import AuditEvent
from members import limits
from members.models import Member
from tests.conftest import bearer
from tests.factories import consent, record, subject


class Clock:
    """members.limits' clock, moved by hand."""

    def __init__(self, start: float = 1_800_000_000.0):  # a minute boundary
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(limits, "clock", fake)
    return fake


def events(action: str, **filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, **filters).order_by("id"))


def assert_429(response, code: str) -> int:
    assert response.status_code == 429, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code
    retry = int(response["Retry-After"])
    assert retry >= 1
    return retry


# --- the request rate -----------------------------------------------------------------------------


def test_a_member_past_its_rate_gets_429_throttled_and_a_peer_does_not(bank_a, bank_b, settings, clock):
    settings.EXCHANGE_THROTTLE_RATE = "3/minute"
    assert [bank_a.client.get("/api/v1/me").status_code for _ in range(3)] == [200, 200, 200]
    retry = assert_429(bank_a.client.get("/api/v1/me"), "throttled")
    assert retry <= 70  # frees within 7/6 of the period
    assert bank_b.client.get("/api/v1/me").status_code == 200  # counted per member


def test_the_rate_is_rolling_and_a_refusal_does_not_count(bank_a, settings, clock):
    settings.EXCHANGE_THROTTLE_RATE = "3/minute"
    for _ in range(3):
        assert bank_a.client.get("/api/v1/me").status_code == 200
    clock.now += 30
    for _ in range(5):  # refused, and not counted against the member
        assert_429(bank_a.client.get("/api/v1/me"), "throttled")
    clock.now += 40  # the first three are 70 s old: out of every bucket counted
    assert [bank_a.client.get("/api/v1/me").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_no_sixty_seconds_hold_more_than_the_rate_across_a_bucket_edge(bank_a, settings, clock):
    settings.EXCHANGE_THROTTLE_RATE = "3/minute"
    clock.now += 9.9  # the end of a 10-second bucket
    assert [bank_a.client.get("/api/v1/me").status_code for _ in range(3)] == [200, 200, 200]
    clock.now += 55  # 55 s later, in another minute and another bucket: still within 60 s of them
    assert_429(bank_a.client.get("/api/v1/me"), "throttled")


def test_a_members_own_rate_replaces_the_default(bank_a, bank_b, settings, clock):
    settings.EXCHANGE_THROTTLE_RATE = "100/minute"
    call_command("set_member_limits", "BANKA", "--rate", "2/minute", stdout=StringIO())
    assert [bank_a.client.get("/api/v1/me").status_code for _ in range(3)] == [200, 200, 429]
    assert [bank_b.client.get("/api/v1/me").status_code for _ in range(3)] == [200, 200, 200]


def test_throttled_refusals_are_audited_once_a_minute_with_the_count(bank_a, settings, clock):
    settings.EXCHANGE_THROTTLE_RATE = "1/minute"
    bank_a.client.get("/api/v1/me")
    for _ in range(5):
        assert_429(bank_a.client.get("/api/v1/me"), "throttled")
    assert events("api.access", outcome="denied") == []  # the minute is not over: only counted
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS
    assert limits.flood_events_write() == 1
    (event,) = events("api.access", member_code="BANKA", outcome="denied")
    assert event.details == {"why": "throttled", "minute": "2027-01-15T08:00Z", "count": 5, "key": bank_a.key[:15]}
    assert event.actor == "member:BANKA"
    assert limits.flood_events_write() == 0  # written once
    assert events("limit.flood") == []  # one event per minute, not a first one and a total


def test_a_lone_refusal_is_one_event_with_count_one(bank_a, settings, clock):
    settings.EXCHANGE_THROTTLE_RATE = "1/minute"
    bank_a.client.get("/api/v1/me")
    assert_429(bank_a.client.get("/api/v1/me"), "throttled")
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS
    assert limits.flood_events_write() == 1
    (event,) = events("api.access", member_code="BANKA", outcome="denied")
    assert event.details["count"] == 1


def test_the_next_refusal_after_the_minute_writes_its_event_without_the_worker(bank_a, bank_b, settings, clock):
    settings.EXCHANGE_THROTTLE_RATE = "1/minute"
    for persona in (bank_a, bank_b):
        persona.client.get("/api/v1/me")
        for _ in range(3):
            assert_429(persona.client.get("/api/v1/me"), "throttled")
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS
    assert_429(bank_a.client.get("/api/v1/me"), "throttled")  # its first refusal of this minute
    (event,) = events("api.access", outcome="denied")
    assert (event.member_code, event.details["count"]) == ("BANKA", 3)  # its own earlier minute only
    assert_429(bank_a.client.get("/api/v1/me"), "throttled")  # not its first: only counted
    assert len(events("api.access", outcome="denied")) == 1
    clock.now += 60
    assert limits.flood_events_write() == 2  # bank_b's minute and bank_a's second one
    counts = sorted((e.member_code, e.details["count"]) for e in events("api.access", outcome="denied"))
    assert counts == [("BANKA", 2), ("BANKA", 3), ("BANKB", 3)]


def test_refusals_of_one_scope_and_code_make_one_event_a_minute_whatever_the_action(bank_a, settings, clock):
    for action, quota in (("inquiry.create", "inquiries"), ("dispute.open", "disputes"), ("inquiry.create", "x")):
        limits.flood_refusal(scope="m|BANKA", code="quota_exceeded", action=action, member_code="BANKA", quota=quota)
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS
    assert limits.flood_events_write() == 1
    (event,) = AuditEvent.objects.filter(outcome="denied")
    assert event.action == "inquiry.create"  # the first refusal's action and details
    assert event.details == {"why": "quota_exceeded", "minute": "2027-01-15T08:00Z", "count": 3, "quota": "inquiries"}


def test_a_minute_whose_event_fails_to_commit_is_written_later_with_every_refusal(bank_a, settings, clock, monkeypatch):
    settings.EXCHANGE_THROTTLE_RATE = "1/minute"
    bank_a.client.get("/api/v1/me")
    for _ in range(4):
        assert_429(bank_a.client.get("/api/v1/me"), "throttled")
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS

    def broken(**_kwargs):
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patched:
        patched.setattr(limits, "audit_denied", broken)
        with pytest.raises(RuntimeError):
            limits.flood_events_write()
    assert events("api.access", outcome="denied") == []
    assert limits.flood_events_write() == 1
    (event,) = events("api.access", outcome="denied")
    assert event.details["count"] == 4


# --- quotas ---------------------------------------------------------------------------------------


def _inquire(persona, n: int, consent_id: str):
    body = {"subject": subject(n), "consent_id": consent_id, "purpose": "credit_application"}
    return persona.client.post("/api/v1/inquiries", body, format="json")


def _consents(persona, count: int) -> list[str]:
    ids = []
    for n in range(count):
        response = persona.client.post("/api/v1/consents", consent(n), format="json")
        assert response.status_code == 201, response.content
        ids.append(response.json()["id"])
    return ids


def test_the_inquiry_quota_holds_over_a_rolling_24_hours(bank_a, bank_b, settings, clock):
    settings.EXCHANGE_INQUIRY_QUOTA = 2
    consents = _consents(bank_a, 3)
    assert _inquire(bank_a, 0, consents[0]).status_code == 200
    clock.now += 12 * 3600
    assert _inquire(bank_a, 1, consents[1]).status_code == 200
    retry = assert_429(_inquire(bank_a, 2, consents[2]), "quota_exceeded")
    assert 12 * 3600 <= retry <= 13 * 3600 + 1  # when the first one leaves the 24 (+1) hours
    assert bank_b.client.get("/api/v1/me").status_code == 200
    b_consent = _consents(bank_b, 1)[0]
    assert _inquire(bank_b, 0, b_consent).status_code == 200  # bank_b's quota is its own
    clock.now += 13 * 3600  # 25 hours after the first
    assert _inquire(bank_a, 2, consents[2]).status_code == 200
    limits.flood_events_write()  # the refusal's minute is over
    (refusal,) = events("inquiry.create", outcome="denied", member_code="BANKA")
    assert refusal.details["why"] == "quota_exceeded" and refusal.details["quota"] == "inquiries"


def test_an_inquiry_refused_for_consent_does_not_use_the_quota(bank_a, settings, clock):
    settings.EXCHANGE_INQUIRY_QUOTA = 1
    (consent_id,) = _consents(bank_a, 1)
    assert _inquire(bank_a, 5, consent_id).status_code == 403  # another subject: consent_required
    assert _inquire(bank_a, 0, consent_id).status_code == 200
    assert_429(_inquire(bank_a, 0, consent_id), "quota_exceeded")


def test_a_members_own_quota_and_zero_for_none(bank_a, settings, clock):
    settings.EXCHANGE_INQUIRY_QUOTA = 1
    call_command("set_member_limits", "BANKA", "--inquiries-per-day", "0", stdout=StringIO())
    (consent_id,) = _consents(bank_a, 1)
    assert [_inquire(bank_a, 0, consent_id).status_code for _ in range(3)] == [200, 200, 200]


def test_the_dispute_quota_holds(bank_a, bank_b, settings, clock):
    settings.EXCHANGE_DISPUTE_QUOTA = 1
    response = bank_b.client.post("/api/v1/records", {"records": [record("B-1", 0), record("B-2", 0)]}, format="json")
    assert response.status_code == 201
    (consent_id,) = _consents(bank_a, 1)
    inquiry = _inquire(bank_a, 0, consent_id).json()
    file = {"inquiry_id": inquiry["id"], "reason": "not mine"}
    assert bank_a.client.post("/api/v1/disputes", {**file, "line": 0}, format="json").status_code == 201
    assert_429(bank_a.client.post("/api/v1/disputes", {**file, "line": 1}, format="json"), "quota_exceeded")
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS
    limits.flood_events_write()
    (refusal,) = events("dispute.open", outcome="denied")
    assert refusal.details["quota"] == "disputes"


# --- set_member_limits ------------------------------------------------------------------------------


def _limits(*args) -> dict:
    out = StringIO()
    call_command("set_member_limits", *args, stdout=out)
    return json.loads(out.getvalue())


def test_set_member_limits_prints_the_limits_in_force_and_resets(bank_a, settings):
    settings.EXCHANGE_THROTTLE_RATE = "1200/minute"
    settings.EXCHANGE_INQUIRY_QUOTA = 20000
    settings.EXCHANGE_DISPUTE_QUOTA = 200
    defaults = {
        "member": "BANKA",
        "rate": "1200/minute",
        "inquiries_per_day": 20000,
        "disputes_per_day": 200,
        "oprf_per_day": 1000000,
    }
    assert _limits("BANKA") == defaults
    own = _limits("BANKA", "--rate", "50/second", "--inquiries-per-day", "10", "--oprf-per-day", "5")
    assert own == {**defaults, "rate": "50/second", "inquiries_per_day": 10, "oprf_per_day": 5}
    assert _limits("BANKA", "--disputes-per-day", "3") == {**own, "disputes_per_day": 3}  # the rest stays
    assert _limits("BANKA", "--reset") == defaults
    assert _limits("BANKA", "--reset", "--oprf-per-day", "7") == {**defaults, "oprf_per_day": 7}
    member = Member.objects.get(code="BANKA")
    assert limits.member_quota(member, limits.Quota.OPRF) == 7
    changes = events("member.set_limits", member_code="BANKA")
    assert len(changes) == 5 and changes[-1].actor.startswith("cli:")
    assert changes[1].details["set"]["rate_limit"] == "50/second"


def test_a_rate_is_parsed_once_per_text(bank_a, settings):
    settings.EXCHANGE_THROTTLE_RATE = "5/minute"
    member = Member.objects.get(code="BANKA")
    first = limits.member_rate(member)
    assert first == limits.Rate(5, 60)
    assert limits.member_rate(member) is first  # the same object: not parsed again on the next request
    with pytest.raises(ValueError):
        limits.Rate.parse("often")
    with pytest.raises(ValueError):  # a refusal is not remembered as a rate
        limits.Rate.parse("often")


def test_set_member_limits_refuses_bad_values(bank_a):
    with pytest.raises(CommandError):
        call_command("set_member_limits", "BANKA", "--rate", "often", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("set_member_limits", "NOBODY", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("set_member_limits", "BANKA", "--inquiries-per-day", "-1", stderr=StringIO())


# --- failed authentication per address -------------------------------------------------------------


def test_failed_authentications_past_the_rate_get_429_and_a_valid_key_still_works(bank_a, outsider, settings, clock):
    settings.EXCHANGE_AUTH_FAILURE_RATE = "3/minute"
    bad = bearer("cx_000000000000_" + "A" * 43)
    statuses = [bad.get("/api/v1/me").status_code for _ in range(2)] + [outsider.get("/api/v1/me").status_code]
    assert statuses == [401, 401, 401]  # a missing key is a failure too
    assert_429(bad.get("/api/v1/me"), "throttled")
    assert_429(outsider.get("/api/v1/me"), "throttled")
    assert bank_a.client.get("/api/v1/me").status_code == 200  # same address, valid key
    other_address = APIClient(REMOTE_ADDR="192.0.2.7")
    assert other_address.get("/api/v1/me").status_code == 401  # counted per address
    clock.now += 71
    assert bad.get("/api/v1/me").status_code == 401


def test_a_flood_of_bad_keys_writes_a_handful_of_events(bank_a, settings, clock):
    settings.EXCHANGE_AUTH_FAILURE_RATE = "10/minute"
    before = AuditEvent.objects.count()
    for n in range(150):
        bearer(f"cx_{n:012d}_" + "B" * 43).get("/api/v1/me")
    assert AuditEvent.objects.count() == before  # counted, not yet written
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS
    assert limits.flood_events_write() == 2
    assert AuditEvent.objects.count() - before == 2
    (failed, throttled) = events("auth.authenticate")
    assert (failed.details["why"], throttled.details["why"]) == ("authentication_failed", "throttled")
    assert failed.actor == "client:127.0.0.1" and failed.details["first_reason"] == "unknown"
    assert (failed.details["count"], throttled.details["count"]) == (10, 140)


def test_the_client_address_trusts_only_the_configured_proxies(settings):
    factory = RequestFactory()
    spoofed = factory.get("/", REMOTE_ADDR="198.51.100.9", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert limits.client_address(spoofed) == "198.51.100.9"  # no proxy configured: never trusted
    settings.EXCHANGE_TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert limits.client_address(spoofed) == "198.51.100.9"  # not from a trusted proxy
    proxied = factory.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.5, 10.0.0.3")
    assert limits.client_address(proxied) == "203.0.113.5"  # right-most untrusted; 1.2.3.4 is the client's word
    garbage = factory.get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="nonsense")
    assert limits.client_address(garbage) == "10.0.0.2"
    v6 = factory.get("/", REMOTE_ADDR="2001:db8:1:2:3:4:5:6")
    assert limits.client_address(v6) == "2001:db8:1:2::/64"  # one host's block counts as one


# --- refusals of an authenticated member -----------------------------------------------------------


def test_a_refusal_no_service_recorded_is_audited_once(bank_a):
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    from core.problems import Forbidden

    class Refusing(APIView):
        audit_name = "refusing"

        def get(self, request):
            raise Forbidden("consent_required", "no")

    request = APIRequestFactory().get("/x", HTTP_AUTHORIZATION=f"Bearer {bank_a.key}")
    assert Refusing.as_view()(request).status_code == 403
    (event,) = events("api.access", outcome="denied")
    assert event.details == {"why": "consent_required", "endpoint": "refusing", "method": "GET", "status": 403}
    # A refusal a service audited is not audited twice.
    other = bank_a.client.get("/api/v1/records/00000000-0000-0000-0000-000000000000")
    assert other.status_code == 404
    assert len(events("api.access", outcome="denied")) == 1
    assert len(events("record.read", outcome="denied")) == 1


def test_a_suspended_members_refused_calls_count_against_its_rate(bank_a):
    from audit.actors import cli_actor
    from members.services import member_set_limits, member_set_status

    member_set_limits(member=bank_a.member, actor=cli_actor("test"), rate="3/minute")
    member_set_status(member=bank_a.member, status="suspended", actor=cli_actor("test"))
    codes = [bank_a.client.get("/api/v1/records").status_code for _ in range(5)]
    assert codes == [403, 403, 403, 429, 429]


# --- floods: late refusals, failures, lost first refusals, the bulk queue -------------------------


def _refuse(n: int = 1, *, scope: str = "m|BANKA", code: str = "throttled", action: str = "api.access") -> None:
    for _ in range(n):
        limits.flood_refusal(scope=scope, code=code, action=action, member_code=scope.partition("|")[2])


def test_a_refusal_counted_after_its_minute_was_written_counts_in_the_next_minute(bank_a, clock):
    start = clock.now
    _refuse(3)
    clock.now = start + 60 + limits.FLOOD_GRACE_SECONDS
    assert limits.flood_events_write() == 1
    clock.now = start + 59  # a server whose clock is 6 s behind, or a slow request
    _refuse()
    clock.now = start + 120 + limits.FLOOD_GRACE_SECONDS
    assert limits.flood_events_write() == 1
    minutes = [(e.details["minute"], e.details["count"]) for e in events("api.access", outcome="denied")]
    assert minutes == [("2027-01-15T08:00Z", 3), ("2027-01-15T08:01Z", 1)]  # no minute twice, none lost


def test_a_failing_event_write_leaves_the_refusal_a_429_and_the_worker_writes_it_later(
    bank_a, settings, clock, monkeypatch, caplog
):
    settings.EXCHANGE_THROTTLE_RATE = "1/minute"
    bank_a.client.get("/api/v1/me")
    assert_429(bank_a.client.get("/api/v1/me"), "throttled")
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS

    def broken(**_kwargs):
        raise RuntimeError("the database went away BANKA")

    with monkeypatch.context() as patched:
        patched.setattr(limits, "audit_denied", broken)
        assert_429(bank_a.client.get("/api/v1/me"), "throttled")  # its first of this minute: not a 500
    assert "RuntimeError" in caplog.text and "BANKA" not in caplog.text
    clock.now += 60
    assert limits.flood_events_write() == 2
    assert [e.details["count"] for e in events("api.access", outcome="denied")] == [1, 1]


def test_run_worker_logs_a_failing_flood_write_and_carries_on(db, monkeypatch, caplog):
    from exchange.management.commands import run_worker

    def broken(**_kwargs):
        raise RuntimeError("10.1.2.3")

    monkeypatch.setattr(run_worker, "flood_events_write", broken)
    monkeypatch.setattr(run_worker, "_database_backend", lambda: False)  # its db_worker closes connections
    call_command("run_worker", "--once", stdout=StringIO())
    assert "flood events not written this round (RuntimeError)" in caplog.text and "10.1.2.3" not in caplog.text


def test_a_first_refusal_of_an_unknown_action_is_still_written(bank_a, clock, caplog):
    _refuse(2, action="no.such.action")
    _refuse(1, scope="a|192.0.2.1", code="authentication_failed", action="gone.too")
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS
    assert limits.flood_events_write() == 2
    (member,) = events("api.access", outcome="denied")
    (address,) = events("auth.authenticate", outcome="denied")
    assert (member.member_code, member.details["count"]) == ("BANKA", 2)
    assert address.actor == "client:192.0.2.1"


def test_the_writer_hands_out_bounded_batches_and_writes_them_all(bank_a, clock, monkeypatch):
    from members import counters

    monkeypatch.setattr(counters, "FLOOD_BATCH", 2)
    for n in range(5):
        _refuse(scope=f"a|192.0.2.{n}", code="authentication_failed", action="auth.authenticate")
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS
    handed = []
    real = counters.DatabaseStore.floods_ended

    def spy(self, before_minute, **kwargs):
        kwargs.setdefault("limit", counters.FLOOD_BATCH)
        handed.append(kwargs["limit"])
        return real(self, before_minute, **kwargs)

    monkeypatch.setattr(counters.DatabaseStore, "floods_ended", spy)
    assert limits.flood_events_write() == 5
    assert handed == [2, 2, 2]  # three transactions: 2, 2 and 1 minutes


def test_a_full_bulk_queue_is_audited_aggregated_as_a_quota_refusal(bank_a, settings, clock):
    from tests.exchange.test_submissions import csv_file, csv_row, upload

    first = csv_file(csv_row("L-1", 1))
    settings.EXCHANGE_MAX_QUEUED_BYTES = len(first) + 10
    assert upload(bank_a, first).status_code == 202
    for n in range(3):
        assert_429(upload(bank_a, csv_file(csv_row(f"L-{n + 2}", n + 2))), "quota_exceeded")
    assert events("submission.create", outcome="denied") == []  # counted, written once the minute is over
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS
    assert limits.flood_events_write() == 1
    (event,) = events("submission.create", outcome="denied")
    assert event.member_code == "BANKA"
    assert event.details == {
        "why": "quota_exceeded",
        "minute": "2027-01-15T08:00Z",
        "count": 3,
        "quota": "queued_bytes",
    }
