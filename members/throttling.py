"""Per-member request rate limit (EXCHANGE_THROTTLE_RATE, or the member's own), counted in the
shared store of members/limits.py so that it holds across every process."""

from __future__ import annotations

from rest_framework.throttling import BaseThrottle

from members import limits


class MemberRateThrottle(BaseThrottle):
    """Runs after authentication and permissions: only members with a valid key reach it (failed
    authentications are limited per address, members/limits.auth_failure)."""

    def allow_request(self, request, view) -> bool:
        if request.auth is not None:
            limits.rate_check(request.user, key_prefix=request.auth.prefix)  # raises the 429
        return True
