"""Bearer API-key authentication: one indexed lookup by prefix, a constant-time hash compare."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from core.context import reset_denial
from core.prepared import PreparedQuery
from members import limits
from members.keys import key_matches, split_key
from members.models import ApiKey

# last_used_at is written at most this often per key, to keep the hot path read-only.
LAST_USED_RESOLUTION = timedelta(minutes=1)

# The key and its member in one query, compiled once (core/prepared.py): this runs on every call,
# so it reads only what the check and the caller need (no creation or update times).
_KEY_FIELDS = ("prefix", "key_hash", "scopes", "expires_at", "revoked_at", "last_used_at")
_MEMBER_FIELDS = ("code", "name", "kind", "status", *limits.MEMBER_FIELDS)
_KEY_BY_PREFIX = PreparedQuery(
    lambda prefix: (
        ApiKey.objects.select_related("member")
        .only(*_KEY_FIELDS, *(f"member__{name}" for name in _MEMBER_FIELDS))
        .filter(prefix=prefix)
        .order_by()
    ),
    prefix=("cx_stand-in-prefix", ApiKey._meta.get_field("prefix")),
)


def _refuse(request, reason: str, prefix: str = "", member_code: str = "") -> Exception:
    """The 401 to raise, or the 429 once the caller's address is past its failed-authentication
    rate; audited aggregated per address and minute (members/limits.py)."""
    throttled = limits.auth_failure(request, why=reason, prefix=prefix, member_code=member_code)
    if throttled is not None:
        return throttled
    messages = {
        "malformed": "The API key is malformed.",
        "unknown": "The API key is not valid.",
        "revoked": "The API key has been revoked.",
        "expired": "The API key has expired.",
    }
    return exceptions.AuthenticationFailed(messages[reason])


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        reset_denial()  # a new request: none of its refusals is on record yet
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _refuse(request, "malformed")
        token = token.strip()
        prefix = split_key(token)
        if prefix is None:
            raise _refuse(request, "malformed")
        key = _KEY_BY_PREFIX.first(prefix=prefix)
        if key is None or not key_matches(token, key.key_hash):
            raise _refuse(request, "unknown", prefix)
        now = timezone.now()
        if key.revoked_at is not None:
            raise _refuse(request, "revoked", prefix, key.member.code)
        if key.expires_at is not None and key.expires_at <= now:
            raise _refuse(request, "expired", prefix, key.member.code)
        if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now
        return key.member, key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
