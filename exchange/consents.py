"""Consents: register, read and revoke a borrower's consent; an inquiry needs an active one."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.actions import Action
from audit.services import audit_write, insert_audited
from core.problems import ApiError, Invalid
from core.tokens import lock_key
from exchange.models import (
    Consent,
)
from exchange.services import Caller, audit_denied, owned_or_404, parse_subject_or_invalid


def _one_year_after(moment: datetime) -> datetime:
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + 1, day=28)


CLOCK_SKEW = timedelta(minutes=5)


def consent_register(
    *,
    caller: Caller,
    subject: Any,
    purpose: str,
    channel: str,
    granted_at: datetime,
    expires_at: datetime,
    evidence_sha256: str,
) -> Consent:
    id_type, token = parse_subject_or_invalid(subject, caller=caller, action=Action.CONSENT_REGISTER)
    now = timezone.now()
    errors = []
    if granted_at > now + CLOCK_SKEW:
        errors.append({"index": None, "field": "granted_at", "message": "must not be in the future"})
    if expires_at <= granted_at:
        errors.append({"index": None, "field": "expires_at", "message": "must be after granted_at"})
    elif expires_at > _one_year_after(granted_at):
        errors.append({"index": None, "field": "expires_at", "message": "must be at most one year after granted_at"})
    if errors:
        audit_denied(caller, Action.CONSENT_REGISTER, "validation_failed", subject_token=token, errors=len(errors))
        raise Invalid(errors)
    evidence_sha256 = evidence_sha256.lower()
    consent = Consent(
        member=caller.member,
        subject_token=token,
        id_type=id_type,
        purpose=purpose,
        channel=channel,
        evidence_sha256=evidence_sha256,
        granted_at=granted_at,
        expires_at=expires_at,
    )
    with transaction.atomic():
        # The check and the insert under one lock, in one transaction: two registrations of one
        # hash for two subjects at once (two processes) cannot both pass the check.
        _lock_evidence(caller, evidence_sha256)
        reused = _evidence_reused(caller, token, evidence_sha256)
        if not reused:
            insert_audited(  # the consent and its audit event, both or neither
                consent,
                action=Action.CONSENT_REGISTER,
                actor=caller.actor,
                member_code=caller.member.code,
                object_type="consent",
                subject_token=token,
                details={"purpose": purpose, "channel": channel, "expires_at": expires_at.isoformat()},
            )
    if reused:  # refused once the lock is released; the refusal's audit event commits on its own
        _refuse_reused_evidence(caller, token)
    return consent


def _lock_evidence(caller: Caller, evidence_sha256: str) -> None:
    """On PostgreSQL, a transaction-level advisory lock on (member, evidence hash), released at the
    commit: registrations of one member's hash wait for each other, any other goes on. SQLite
    (development only) lets one writing transaction at a time run."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)",
            [lock_key("consent-evidence-lock", str(caller.member.pk), evidence_sha256)],
        )


def _evidence_reused(caller: Caller, token: str, evidence_sha256: str) -> bool:
    """One signed authorisation names one borrower: the member may not register its hash for
    another subject (a renewal for the same subject may reuse it)."""
    return (
        Consent.objects.filter(member=caller.member, evidence_sha256=evidence_sha256)
        .exclude(subject_token=token)
        .exists()
    )


def _refuse_reused_evidence(caller: Caller, token: str) -> None:
    """Audited, then 422."""
    audit_denied(caller, Action.CONSENT_REGISTER, "consent_evidence_reused", subject_token=token)
    raise ApiError(
        422,
        "consent_evidence_reused",
        "You registered this evidence_sha256 for another subject: each borrower's consent needs its own "
        "signed authorisation.",
    )


def consent_get(*, caller: Caller, consent_id: Any, action: str = Action.CONSENT_READ) -> Consent:
    return owned_or_404(caller, Consent.objects.all(), consent_id, action=action, object_type="consent")


def consent_revoke(*, caller: Caller, consent_id: Any) -> Consent:
    consent = consent_get(caller=caller, consent_id=consent_id, action=Action.CONSENT_REVOKE)  # audited outside
    with transaction.atomic():
        return _consent_revoke(caller=caller, consent=consent)


def _consent_revoke(*, caller: Caller, consent: Consent) -> Consent:
    consent = Consent.objects.select_for_update().get(pk=consent.pk)
    already = consent.revoked_at is not None
    if not already:
        consent.revoked_at = timezone.now()
        consent.save(update_fields=["revoked_at"])
    audit_write(
        action=Action.CONSENT_REVOKE,
        actor=caller.actor,
        member_code=caller.member.code,
        object_type="consent",
        object_id=consent.pk,
        subject_token=consent.subject_token,
        details={"already_revoked": already},
    )
    return consent
