"""Limits that hold across every process of a deployment (counted in members/counters.py's store).

- per member: the request rate (EXCHANGE_THROTTLE_RATE), inquiries, disputes filed and OPRF
  elements per rolling 24 hours; a member's own values (`set_member_limits`) replace the defaults;
- per client address: failed authentications (EXCHANGE_AUTH_FAILURE_RATE).

A limit of N per period P is counted in buckets of P/6 (rates) or of one hour (24-hour quotas): a
request is allowed while the current bucket and the 6 (or 24) before it hold at most N. So no
P-long stretch of time ever holds more than N, and a limit used up frees within 7/6 P (25 hours
for a quota). A refused request is taken back out of the member's count (a member that retries
too early is not punished); a failed authentication past the limit still counts.

Refusals that come in floods are audited aggregated (docs/audit.md): each refusal is counted per
(address or member, code, minute), and each such minute gets exactly one audit event, once it is
over, carrying the count and what its first refusal was. The event is written by the next refusal
of the same address or member and code (its first of a later minute: one look-up of that key, no
scan), or by `run_worker` on every round (`flood_events_write`), whichever comes first. A minute's
count leaves the store only when its event has committed. A refusal counted for a minute already
written goes to the key's next minute; a failed write is logged and left to the next round.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import transaction
from rest_framework import status

from audit.actions import Action
from audit.actors import client_actor, member_actor
from audit.services import audit_denied
from core.problems import ApiError
from members import counters
from members.models import Member

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RATE_BUCKETS = 6
DAY = 86400
QUOTA_BUCKETS = 24
OPRF_PER_DAY = 1_000_000

logger = logging.getLogger(__name__)


def clock() -> float:
    """Seconds since the epoch (tests move it forward)."""
    return time.time()


class Quota(StrEnum):
    INQUIRIES = "inquiries"
    DISPUTES = "disputes"
    OPRF = "oprf"


# The member's field holding its own value (NULL: the deployment's default).
QUOTA_FIELDS = {Quota.INQUIRIES: "inquiries_per_day", Quota.DISPUTES: "disputes_per_day", Quota.OPRF: "oprf_per_day"}
# What the checks read of a member: loaded with it by the key lookup (members/authentication.py).
MEMBER_FIELDS = ("rate_limit", *QUOTA_FIELDS.values())


def _default_quota(quota: Quota) -> int:
    if quota == Quota.INQUIRIES:
        return settings.EXCHANGE_INQUIRY_QUOTA
    if quota == Quota.DISPUTES:
        return settings.EXCHANGE_DISPUTE_QUOTA
    return OPRF_PER_DAY


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    period: int  # seconds

    @staticmethod
    @lru_cache(maxsize=256)
    def parse(text: str) -> Rate:
        """`1200/minute` (DRF's form: second, minute, hour, day, or their first letter). Parsed
        once per rate string: the checks ask on every request (a refused text is not cached)."""
        count, sep, period = text.strip().partition("/")
        if not sep or not count.isdigit() or int(count) < 1 or period[:1] not in PERIODS:
            raise ValueError(f"a rate looks like 1200/minute, not {text!r}")
        return Rate(int(count), PERIODS[period[:1]])


class TooManyRequests(ApiError):
    """429 `throttled` or `quota_exceeded`, with Retry-After."""

    def __init__(self, code: str, detail: str, retry_after: int):
        super().__init__(status.HTTP_429_TOO_MANY_REQUESTS, code, detail)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}


# --- a member's limits ---------------------------------------------------------------------------


def member_rate(member: Member) -> Rate | None:
    text = member.rate_limit or settings.EXCHANGE_THROTTLE_RATE
    return Rate.parse(text) if text else None


def member_quota(member: Member, quota: Quota) -> int:
    """The member's quota per rolling 24 hours; 0: none."""
    own = getattr(member, QUOTA_FIELDS[quota])
    return _default_quota(quota) if own is None else own


def member_limits(member: Member) -> dict[str, Any]:
    """The limits in force for a member (its own, else the defaults), as `set_member_limits` prints them."""
    rate = member.rate_limit or settings.EXCHANGE_THROTTLE_RATE or None
    return {
        "member": member.code,
        "rate": rate,
        **{f"{quota.value}_per_day": member_quota(member, quota) for quota in Quota},
    }


# --- counting ------------------------------------------------------------------------------------


def _over(key: str, *, limit: int, period: int, buckets: int, amount: int = 1) -> tuple[int | None, int]:
    """Count `amount` hits of `key`; (seconds until the count frees, if it is now past `limit`; bucket)."""
    now = clock()
    width_ms = period * 1000 // buckets
    now_ms = int(now * 1000)
    bucket = now_ms // width_ms
    hit = counters.store().hit(key, bucket, buckets, int(now) + period + period // buckets + 60, amount=amount)
    if hit.current + hit.earlier <= limit:
        return None, bucket
    oldest = hit.oldest if hit.oldest is not None else bucket
    return max(1, math.ceil(((oldest + buckets + 1) * width_ms - now_ms) / 1000)), bucket


def rate_check(member: Member, *, key_prefix: str = "") -> None:
    """The member's request rate: one round trip to the store; past it, 429 `throttled`."""
    rate = member_rate(member)
    if rate is None:
        return
    key = f"rate|{member.code}"
    retry, bucket = _over(key, limit=rate.count, period=rate.period, buckets=RATE_BUCKETS)
    if retry is None:
        return
    counters.store().undo(key, bucket)
    flood_refusal(
        scope=f"m|{member.code}", code="throttled", action=Action.API_ACCESS, member_code=member.code, key=key_prefix
    )
    raise TooManyRequests("throttled", f"Request limit reached; retry in {retry} seconds.", retry)


def quota_take(member: Member, quota: Quota, *, action: str, amount: int = 1) -> None:
    """Count `amount` against one of the member's 24-hour quotas; past it, 429 `quota_exceeded`
    (and nothing counted)."""
    limit = member_quota(member, quota)
    if not limit:
        return
    key = f"quota|{quota.value}|{member.code}"
    retry, bucket = _over(key, limit=limit, period=DAY, buckets=QUOTA_BUCKETS, amount=amount)
    if retry is None:
        return
    counters.store().undo(key, bucket, amount=amount)
    quota_refused(member, action=action, quota=quota.value)
    detail = f"The {quota.value} quota of {limit} per 24 hours is used up; retry in {retry} seconds."
    raise TooManyRequests("quota_exceeded", detail, retry)


def quota_refused(member: Member, *, action: str, quota: str) -> None:
    """Audit a 429 `quota_exceeded` of the member (a 24-hour quota, or another such as the bulk
    queue's bytes), aggregated with its others: one event per minute (flood_refusal)."""
    flood_refusal(scope=f"m|{member.code}", code="quota_exceeded", action=action, member_code=member.code, quota=quota)


# --- failed authentication by client address -----------------------------------------------------


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _ip(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(request) -> str:
    """The caller's address: REMOTE_ADDR, or, when that is one of EXCHANGE_TRUSTED_PROXIES, the
    right-most X-Forwarded-For entry that is not a trusted proxy (entries to its left are the
    client's own word and never trusted). IPv6 counts by /64, the block one host is given."""
    remote = _ip(request.META.get("REMOTE_ADDR", ""))
    proxies = _networks(tuple(settings.EXCHANGE_TRUSTED_PROXIES))
    if remote is not None and proxies and any(remote in net for net in proxies):
        for entry in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
            forwarded = _ip(entry)
            if forwarded is None:
                break
            remote = forwarded
            if not any(forwarded in net for net in proxies):
                break
    if remote is None:
        return "unknown"
    if remote.version == 6:
        if remote.ipv4_mapped is not None:
            return str(remote.ipv4_mapped)
        return str(ipaddress.ip_network(f"{remote}/64", strict=False))
    return str(remote)


def auth_failure(request, *, why: str, prefix: str = "", member_code: str = "") -> TooManyRequests | None:
    """Count a failed authentication of the request's address (one round trip) and audit it
    aggregated; the 429 to raise instead of 401 once the address is past EXCHANGE_AUTH_FAILURE_RATE."""
    address = client_address(request)
    retry = None
    if settings.EXCHANGE_AUTH_FAILURE_RATE:
        rate = Rate.parse(settings.EXCHANGE_AUTH_FAILURE_RATE)
        retry, _bucket = _over(f"authfail|{address}", limit=rate.count, period=rate.period, buckets=RATE_BUCKETS)
    code = "authentication_failed" if retry is None else "throttled"
    details = {"first_reason": why, **({"prefix": prefix} if prefix else {})}
    flood_refusal(scope=f"a|{address}", code=code, action=Action.AUTHENTICATE, member_code=member_code, **details)
    if retry is None:
        return None
    return TooManyRequests(
        "throttled", f"Too many failed authentications from this address; retry in {retry} seconds.", retry
    )


# --- refusals in floods, audited per minute ------------------------------------------------------

# A minute is written this long after it ends: a refusal counted a moment late (its request read
# the clock just before the minute turned) still lands in its minute's count.
FLOOD_GRACE_SECONDS = 5


def _minute_text(minute: int) -> str:
    return datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _actor(scope: str) -> str:
    kind, _, who = scope.partition("|")
    return member_actor(who) if kind == "m" else client_actor(who)


def _flood_key(code: str, scope: str) -> str:
    return f"{counters.FLOOD_PREFIX}{code}|{scope}"


def _written_before(now: float) -> int:
    """The first minute not yet over (grace included): the minutes before it get their events."""
    return int((now - FLOOD_GRACE_SECONDS) // 60)


def flood_refusal(*, scope: str, code: str, action: str, member_code: str = "", **details: Any) -> None:
    """One refusal of a kind that comes in floods: counted per (scope, code, minute), one round
    trip. Its event is written once the minute is over (see the module's docstring); the first
    refusal of a minute also writes the events of this scope and code's earlier minutes. A minute
    already written does not count it: the key's next minute does (a refusal counted late, by a
    slow request or a server whose clock is behind, never gives a minute a second event).

    Never fails the request for the writing: the count is stored, and the worker writes what a
    failed write leaves (logged without the key: it names a member or an address)."""
    now = clock()
    key = _flood_key(code, scope)
    first = {"action": str(action), "member_code": member_code, "details": {k: v for k, v in details.items() if v}}
    count, _minute = counters.store().flood(key, int(now // 60), int(now), first=json.dumps(first, sort_keys=True))
    if count == 1:
        try:
            _events_write(now, key=key)
        except Exception as exc:  # noqa: BLE001 - the refusal stands; run_worker writes the event
            logger.warning("flood events not written on the request path (%s); run_worker will", type(exc).__name__)


def _first(flood: counters.Flood, scope: str) -> tuple[Action, str, dict[str, Any]]:
    """The event's action, member code and details, from the minute's first refusal; if the store
    lost it (or it cannot be read), what the key itself says (a member's scope names its code)."""
    try:
        first = json.loads(flood.first) if flood.first else {}
        details = dict(first.get("details") or {})
        member_code = str(first.get("member_code") or "")
    except (ValueError, TypeError, AttributeError):
        first, details, member_code = {}, {}, ""
    kind, _, who = scope.partition("|")
    if not member_code and kind == "m":
        member_code = who
    fallback = Action.API_ACCESS if kind == "m" else Action.AUTHENTICATE
    try:
        action = Action(first.get("action") or fallback)
    except ValueError:  # an action no longer known: the event is still written
        action = fallback
        logger.warning("flood event of an unknown action written as %s", fallback)
    return action, member_code, details


def _events_write(now: float, *, key: str | None = None) -> int:
    """The audit event of each ended flood minute (of `key` only, or of every key); how many.
    In batches of counters.FLOOD_BATCH minutes, one transaction each. Events and the store's
    forgetting of their counts commit together (database store), or the counts are forgotten
    after the commit (Redis): a failed commit loses nothing."""
    written = 0
    while True:
        with counters.store().floods_ended(_written_before(now), key=key) as floods, transaction.atomic():
            for flood in floods:
                code, _, scope = flood.key.removeprefix(counters.FLOOD_PREFIX).partition("|")
                if flood.count < 1:  # the store lost the count (evicted): nothing to say how many
                    continue
                action, member_code, details = _first(flood, scope)
                audit_denied(
                    action=action,
                    actor=_actor(scope),
                    why=code,
                    member_code=member_code,
                    minute=_minute_text(flood.minute),
                    count=flood.count,
                    **details,
                )
                written += 1
        if len(floods) < counters.FLOOD_BATCH:
            return written


def flood_events_write(*, sweep: bool = False) -> int:
    """The audit event of every ended flood minute not yet written; how many. Safe to call from any
    process at any time (each minute is handed to one caller). With `sweep`, also deletes the
    counting buckets no limit reads any more (run_worker does both, every round)."""
    now = clock()
    if sweep:
        counters.store().sweep(int(now))
    return _events_write(now)
