"""`Idempotency-Key` handling (IETF draft): a retry with the same key and body replays the first
response; the same key with another body is refused; a key whose first request still runs gets 409."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.response import Response

from core.problems import ApiError, Malformed
from exchange.models import IdempotencyKey
from members.models import Member

RETENTION = timedelta(hours=48)  # the contract promises at least 24 hours
LOCK_TIMEOUT = timedelta(minutes=5)  # a first request that died is taken over after this


def fingerprint(request) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0")
    digest.update(request.path.encode())
    digest.update(b"\0")
    digest.update(request.body)
    return digest.hexdigest()


def _claim(member: Member, key: str, print_: str) -> IdempotencyKey | Response:
    """Insert the key as in progress (committed at once), or answer from the earlier request."""
    now = timezone.now()
    for _attempt in range(3):
        try:
            with transaction.atomic():
                return IdempotencyKey.objects.create(
                    member=member, key=key, fingerprint=print_, locked_until=now + LOCK_TIMEOUT
                )
        except IntegrityError:
            pass
        with transaction.atomic():
            earlier = IdempotencyKey.objects.select_for_update().filter(member=member, key=key).first()
            if earlier is None:
                continue  # removed meanwhile: try to insert again
            if earlier.created_at < now - RETENTION:
                earlier.delete()
                continue
            if earlier.fingerprint != print_:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "This Idempotency-Key was used with a different request body; use a new key.",
                )
            if earlier.completed:
                response = Response(earlier.response_body, status=earlier.response_status)
                response["Idempotent-Replayed"] = "true"
                return response
            if earlier.locked_until > now:
                raise ApiError(
                    409, "idempotency_in_progress", "A request with this Idempotency-Key is still running; retry later."
                )
            earlier.locked_until = now + LOCK_TIMEOUT
            earlier.save(update_fields=["locked_until"])
            return earlier
    raise ApiError(409, "idempotency_in_progress", "A request with this Idempotency-Key is still running.")


def idempotent(request, member: Member, handler: Callable[[], Response]) -> Response:
    """Run `handler` at most once per (member, Idempotency-Key, body).

    The handler's change and the stored response commit in one transaction, so a crash leaves
    either both or neither. A refusal (4xx) is not remembered: the key may be retried.
    """
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return handler()
    if not (1 <= len(key) <= 255) or not key.isprintable():
        raise Malformed("Idempotency-Key must be 1 to 255 printable characters.")
    claim = _claim(member, key, fingerprint(request))
    if isinstance(claim, Response):
        return claim
    error: Exception | None = None
    try:
        with transaction.atomic():
            try:
                response = handler()
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the refusal's audit commits
                error = exc
                IdempotencyKey.objects.filter(pk=claim.pk).delete()
            else:
                if 200 <= response.status_code < 300:
                    IdempotencyKey.objects.filter(pk=claim.pk).update(
                        completed=True, response_status=response.status_code, response_body=response.data
                    )
                else:
                    IdempotencyKey.objects.filter(pk=claim.pk).delete()
    except BaseException:
        # The commit itself failed (database gone): free the key so that a retry can run
        # (if the database is still away, the key frees itself after LOCK_TIMEOUT).
        try:
            IdempotencyKey.objects.filter(pk=claim.pk, completed=False).delete()
        except Exception:  # noqa: BLE001, S110 - best effort; the original error matters
            pass
        raise
    if error is not None:
        raise error
    return response
