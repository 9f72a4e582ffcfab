"""Per-member request rate limit (EXCHANGE_THROTTLE_RATE)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class MemberRateThrottle(SimpleRateThrottle):
    scope = "member"

    def get_rate(self):
        # Read at request time so the setting can change (tests, reloads) without import-time state.
        return settings.EXCHANGE_THROTTLE_RATE

    def get_cache_key(self, request, view):
        if request.auth is None:
            return self.cache_format % {"scope": "anon", "ident": self.get_ident(request)}
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}
