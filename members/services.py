"""Operations on members and keys; each writes its audit event in the same transaction."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit.actions import Action
from audit.models import AuditEvent
from audit.services import audit_bulk_write, audit_write
from members.custody import key_seal, recipient_clean
from members.keys import new_key
from members.limits import Rate
from members.models import ApiKey, Member, MemberKind, MemberStatus, Scope


def _clean_scopes(scopes: list[str]) -> str:
    unknown = sorted(set(scopes) - set(Scope.values))
    if unknown or not scopes:
        raise ValidationError(f"scopes must be among {', '.join(Scope.values)}")
    return ",".join(s for s in Scope.values if s in scopes)


def _audit_member(member: Member, action: str, actor: str, details: dict) -> None:
    """The audit event of a change to one member, in the caller's transaction."""
    audit_write(
        action=action,
        actor=actor,
        member_code=member.code,
        object_type="member",
        object_id=member.id,
        details=details,
    )


@transaction.atomic
def api_key_issue(
    *, member: Member, scopes: list[str], expires_days: int | None = None, actor: str
) -> tuple[ApiKey, str]:
    """Issue a key; returns the stored key and the secret as delivered, which is shown once only:
    for a member with a key recipient, the key ASCII-armoured and age-encrypted to it (the
    plaintext never leaves this function); for one without, the plaintext key."""
    if expires_days is not None and expires_days < 1:
        raise ValidationError("expires_days must be at least 1")
    full, prefix, digest = new_key()
    key = ApiKey.objects.create(
        member=member,
        prefix=prefix,
        key_hash=digest,
        scopes=_clean_scopes(scopes),
        expires_at=timezone.now() + timedelta(days=expires_days) if expires_days else None,
    )
    audit_write(
        action=Action.API_KEY_ISSUE,
        actor=actor,
        member_code=member.code,
        object_type="api_key",
        object_id=key.id,
        details={
            "prefix": prefix,
            "scopes": key.scopes,
            "expires_at": key.expires_at.isoformat() if key.expires_at else None,
            "sealed": bool(member.key_recipient),
        },
    )
    if member.key_recipient:
        return key, key_seal(full, member.key_recipient)
    return key, full


@transaction.atomic
def member_create(
    *,
    code: str,
    name: str,
    kind: str = MemberKind.OTHER,
    key_recipient: str = "",
    issue_key: bool = True,
    actor: str,
) -> tuple[Member, ApiKey | None, str | None]:
    """A new member with one key of both scopes (unless `issue_key` is False), delivered as
    `api_key_issue` delivers it: age-encrypted when `key_recipient` is given."""
    if kind not in MemberKind.values:
        raise ValidationError(f"kind must be one of {', '.join(MemberKind.values)}")
    if not name.strip():
        raise ValidationError("name must not be empty")
    recipient = recipient_clean(key_recipient) if key_recipient else ""
    member = Member(code=code, name=name.strip(), kind=kind, key_recipient=recipient)
    member.full_clean()
    member.save()
    _audit_member(member, Action.MEMBER_CREATE, actor, {"kind": kind, "key_recipient": recipient or None})
    if not issue_key:
        return member, None, None
    key, secret = api_key_issue(member=member, scopes=[Scope.SUBMIT, Scope.QUERY], actor=actor)
    return member, key, secret


@transaction.atomic
def member_set_key_recipient(*, member: Member, recipient: str, actor: str) -> Member:
    """Register the member's age recipient: from now on its keys are delivered only encrypted to it."""
    cleaned = recipient_clean(recipient)
    member = Member.objects.select_for_update().get(pk=member.pk)
    previous = member.key_recipient
    member.key_recipient = cleaned
    member.save(update_fields=["key_recipient", "updated_at"])
    _audit_member(member, Action.MEMBER_SET_KEY_RECIPIENT, actor, {"from": previous or None, "to": cleaned})
    return member


def api_key_revoke(*, key: ApiKey, actor: str) -> ApiKey:
    (revoked,) = api_keys_revoke(key_ids=[key.pk], actor=actor)
    return revoked


@transaction.atomic
def api_keys_revoke(*, key_ids: QuerySet | Iterable[Any], actor: str) -> list[ApiKey]:
    """Revoke keys now (those already revoked keep their time), each audited, in one transaction
    and a fixed number of queries however many: one read locking them (with their members; a
    queryset of ids is its subquery), one update, one insert of their events."""
    ids = key_ids if isinstance(key_ids, QuerySet) else list(key_ids)
    keys = list(
        ApiKey.objects.select_for_update(of=("self",)).select_related("member").filter(pk__in=ids).order_by("pk")
    )
    now = timezone.now()
    fresh = [key for key in keys if key.revoked_at is None]
    if fresh:
        ApiKey.objects.filter(pk__in=[key.pk for key in fresh]).update(revoked_at=now)
        for key in fresh:
            key.revoked_at = now
    audit_bulk_write(
        [
            AuditEvent(
                action=Action.API_KEY_REVOKE,
                actor=actor,
                member_code=key.member.code,
                object_type="api_key",
                object_id=str(key.id),
                details={"prefix": key.prefix},
            )
            for key in keys
        ]
    )
    return keys


@transaction.atomic
def member_set_status(*, member: Member, status: str, actor: str) -> Member:
    if status not in MemberStatus.values:
        raise ValidationError(f"status must be one of {', '.join(MemberStatus.values)}")
    member = Member.objects.select_for_update().get(pk=member.pk)
    previous = member.status
    member.status = status
    member.save(update_fields=["status", "updated_at"])
    _audit_member(member, Action.MEMBER_SET_STATUS, actor, {"from": previous, "to": status})
    return member


@transaction.atomic
def member_update(*, member: Member, name: str, kind: str, actor: str) -> Member:
    """Change a member's display name or kind (its code is its identity and never changes)."""
    if kind not in MemberKind.values:
        raise ValidationError(f"kind must be one of {', '.join(MemberKind.values)}")
    if not name.strip():
        raise ValidationError("name must not be empty")
    member = Member.objects.select_for_update().get(pk=member.pk)
    changed = sorted(
        field for field, value in (("name", name.strip()), ("kind", kind)) if getattr(member, field) != value
    )
    member.name, member.kind = name.strip(), kind
    member.save(update_fields=["name", "kind", "updated_at"])
    _audit_member(member, Action.MEMBER_UPDATE, actor, {"fields": changed})
    return member


_UNCHANGED: Any = object()


@transaction.atomic
def member_set_limits(
    *,
    member: Member,
    actor: str,
    rate: str | None = _UNCHANGED,
    inquiries_per_day: int | None = _UNCHANGED,
    disputes_per_day: int | None = _UNCHANGED,
    oprf_per_day: int | None = _UNCHANGED,
) -> Member:
    """Set the member's own limits (None: back to the default; a quota of 0: none); those not
    passed stay as they are."""
    given = {
        "rate_limit": rate,
        "inquiries_per_day": inquiries_per_day,
        "disputes_per_day": disputes_per_day,
        "oprf_per_day": oprf_per_day,
    }
    given = {field: value for field, value in given.items() if value is not _UNCHANGED}
    if given.get("rate_limit") is not None:
        try:
            Rate.parse(given["rate_limit"])
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
    for field, value in given.items():
        if field != "rate_limit" and value is not None and (isinstance(value, bool) or value < 0):
            raise ValidationError(f"{field} must be a whole number, 0 or more")
    member = Member.objects.select_for_update().get(pk=member.pk)
    for field, value in given.items():
        setattr(member, field, (value or "") if field == "rate_limit" else value)
    if given:
        member.save(update_fields=[*given, "updated_at"])
    _audit_member(member, Action.MEMBER_SET_LIMITS, actor, {"set": {field: getattr(member, field) for field in given}})
    return member
