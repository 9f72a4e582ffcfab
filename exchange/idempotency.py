"""`Idempotency-Key` handling (IETF draft): a retry with the same key and body replays the first
response; the same key with another body is refused; a key whose first request still runs gets 409."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from audit.services import audit_write
from core.crypto import decrypt, encrypt, field_aad
from core.problems import ApiError, Malformed
from core.tokens import keyed_digest, lock_key
from exchange.models import IdempotencyKey
from exchange.services import Caller
from members.models import Member

RETENTION = timedelta(hours=48)  # the contract promises at least 24 hours
LOCK_TIMEOUT = timedelta(minutes=5)  # a first request that died is taken over after this


FINGERPRINT_PURPOSE = "idempotency-fingerprint"


def response_aad(pk: int) -> bytes:
    """Binds a stored response to its table, column and row, like an EncryptedTextField."""
    return field_aad(IdempotencyKey, IdempotencyKey._meta.get_field("response_sealed"), pk)


def response_seal(pk: int, data: object) -> bytes:
    # Kept as JSON text: PostgreSQL's jsonb would reorder the keys of the replay.
    return encrypt(json.dumps(data, cls=JSONEncoder), aad=response_aad(pk))


def response_open(pk: int, sealed) -> object:
    return json.loads(decrypt(bytes(sealed), aad=response_aad(pk)))


def fingerprint(request, member: Member) -> str:
    """A keyed digest of method, path and body: the body holds identifiers, so its plain SHA-256
    would let anyone with the table test guesses (as a raw file hash did, issue #18)."""
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0")
    digest.update(request.path.encode())
    digest.update(b"\0")
    digest.update(request.body)
    return keyed_digest(FINGERPRINT_PURPOSE, str(member.pk), digest.hexdigest())


def _lock_id(member: Member, key: str) -> int:
    return lock_key("idempotency-lock", str(member.pk), key)


@contextmanager
def _running(member: Member, key: str) -> Iterator[bool | None]:
    """On PostgreSQL, a session advisory lock held while the request with this key runs.

    Yields False if another request holds it (still running), True once held. The lock dies
    with its connection, so when a request died with the database, its claim is known to be
    abandoned at once and a retry takes it over, instead of waiting for LOCK_TIMEOUT.
    Elsewhere (SQLite) yields None: only the claim's `locked_until` can tell.
    """
    if connection.vendor != "postgresql":
        yield None
        return
    lock = _lock_id(member, key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock])
        held = bool(cursor.fetchone()[0])
    try:
        yield held
    finally:
        if held:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [lock])
            except Exception:  # noqa: BLE001, S110 - a broken connection took the lock with it
                pass


def _in_progress() -> ApiError:
    return ApiError(
        409, "idempotency_in_progress", "A request with this Idempotency-Key is still running; retry later."
    )


def _claim(member: Member, key: str, print_: str, *, owner_alive: bool | None) -> IdempotencyKey | Response:
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
                response = Response(response_open(earlier.pk, earlier.response_sealed), status=earlier.response_status)
                response["Idempotent-Replayed"] = "true"
                return response
            # owner_alive is False when we hold the request lock ourselves: the claim's request died.
            if earlier.locked_until > now and owner_alive is not False:
                raise _in_progress()
            earlier.locked_until = now + LOCK_TIMEOUT
            earlier.save(update_fields=["locked_until"])
            return earlier
    raise _in_progress()


def idempotent(request, caller: Caller, handler: Callable[[], Response], *, replay: str) -> Response:
    """Run `handler` at most once per (member, Idempotency-Key, body).

    The handler's change and the stored response commit in one transaction, so a crash leaves
    either both or neither. A refusal (4xx) is not remembered: the key may be retried. A replay
    is audited as `replay` (`<action>.replay`).
    """
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return handler()
    if not (1 <= len(key) <= 255) or not key.isprintable():
        raise Malformed("Idempotency-Key must be 1 to 255 printable characters.")
    member = caller.member
    with _running(member, key) as held:
        if held is False:
            raise _in_progress()
        response = _run_claimed(
            member, key, fingerprint(request, member), handler, owner_alive=None if held is None else False
        )
    if response.get("Idempotent-Replayed") == "true":
        _audit_replay(caller, replay, response)
    return response


def _audit_replay(caller: Caller, action: str, response: Response) -> None:
    data = response.data
    object_id = data.get("id", "") if isinstance(data, dict) else ""
    with transaction.atomic():
        audit_write(
            action=action,
            actor=caller.actor,
            member_code=caller.member.code,
            object_type=action.split(".", 1)[0] if object_id else "",
            object_id=object_id,
            details={"status": response.status_code},
        )


def _run_claimed(
    member: Member, key: str, print_: str, handler: Callable[[], Response], *, owner_alive: bool | None
) -> Response:
    claim = _claim(member, key, print_, owner_alive=owner_alive)
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
                        completed=True,
                        response_status=response.status_code,
                        response_sealed=response_seal(claim.pk, response.data),
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
