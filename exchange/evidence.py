"""Evidence requests: compliance staff (or `request_evidence`) pick a member's inquiries and the
member answers each with the signed authorisation itself. The exchange hashes the document while
it streams in, compares the hash with the consent's `evidence_sha256` and keeps only the hash,
the size and the verdict. An unanswered request reads as `overdue` as soon as `due_at` has passed
(EvidenceRequest.status_at, evidence_status_q); run_worker stores it (and audits it) later.
"""

from __future__ import annotations

import hmac
import random
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from audit.actions import Action
from audit.services import audit_write, insert_sealed
from core.problems import ApiError, Malformed, PayloadTooLarge
from core.streams import hash_blocks
from exchange.models import EvidenceRequest, EvidenceStatus, Inquiry, evidence_status_q
from exchange.services import Caller, audit_denied, owned_or_404
from members.models import Member

MAX_DOCUMENT_BYTES = 20 * 1024 * 1024  # the contract's cap on an evidence document
SAMPLE_DAYS = 90  # a sample is drawn from the member's inquiries of this many days
READ_BLOCK = 1 << 16
OPEN_ATTEMPTS = 3  # a sample retried without the inquiries another operator requested meanwhile


class EvidenceError(Exception):
    """A request that cannot be opened (unknown inquiry, no consent, already requested)."""


def evidence_due(opened_at: datetime) -> datetime:
    return opened_at + timedelta(days=settings.EXCHANGE_EVIDENCE_DAYS)


# --- opening requests (staff, commands) --------------------------------------------------------


def _candidates(member: Member, now: datetime):
    """The member's inquiries of the last SAMPLE_DAYS made under a consent, not yet requested."""
    return Inquiry.objects.filter(
        member=member, created_at__gte=now - timedelta(days=SAMPLE_DAYS), consent__isnull=False
    ).exclude(evidence_requests__isnull=False)


def evidence_requests_open(
    *,
    member: Member,
    actor: str,
    sample: int = 0,
    inquiry_ids: Iterable[Any] = (),
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> list[EvidenceRequest]:
    """Open evidence requests for `sample` random inquiries of the member, or for the named ones.

    Named inquiries must be the member's, made under a consent and not requested before
    (EvidenceError otherwise, and nothing is opened). A sample takes what there is, up to `sample`.
    The requests and their audit events are inserted in one batch, in one transaction. Another
    operator requesting one of the inquiries at the same moment is not a 500: named inquiries are
    refused as already requested (EvidenceError), a sample leaves that inquiry out.
    """
    now = now or timezone.now()
    if inquiry_ids:
        wanted = []
        for raw in inquiry_ids:
            try:
                wanted.append(uuid.UUID(str(raw)))
            except ValueError:
                raise EvidenceError(f"{str(raw)[:40]!r} is not an inquiry id") from None
        found = {
            inquiry.pk: inquiry
            for inquiry in Inquiry.objects.filter(pk__in=wanted, member=member).select_related("consent")
        }
        for pk in wanted:
            inquiry = found.get(pk)
            if inquiry is None:
                raise EvidenceError(f"inquiry {pk} is not one of {member.code}'s")
            if inquiry.consent is None:
                raise EvidenceError(f"inquiry {pk} has no consent left to check")
        already = set(EvidenceRequest.objects.filter(inquiry__in=wanted).values_list("inquiry_id", flat=True))
        if already:
            raise EvidenceError(f"inquiry {sorted(map(str, already))[0]} already has an evidence request")
        chosen = [found[pk] for pk in dict.fromkeys(wanted)]
    else:
        candidates = _candidates(member, now)
        if rng is not None:  # a reproducible sample (tests)
            ids = sorted(candidates.values_list("pk", flat=True))
            picked = rng.sample(ids, min(sample, len(ids)))
        else:  # the database draws: no list of a big member's 90 days in memory
            picked = list(candidates.order_by("?").values_list("pk", flat=True)[:sample])
        chosen = list(Inquiry.objects.filter(pk__in=picked).select_related("consent").order_by("created_at"))
    for _attempt in range(OPEN_ATTEMPTS):
        try:
            return _insert_requests(member, actor, chosen, now)
        except IntegrityError:
            taken = set(
                EvidenceRequest.objects.filter(inquiry__in=[i.pk for i in chosen]).values_list("inquiry_id", flat=True)
            )
            if not taken:
                raise  # not the one-request-per-inquiry constraint
            if inquiry_ids:
                raise EvidenceError(f"inquiry {sorted(map(str, taken))[0]} already has an evidence request") from None
            chosen = [inquiry for inquiry in chosen if inquiry.pk not in taken]
    raise EvidenceError("other evidence requests were being opened for this member at the same time; try again")


def _insert_requests(member: Member, actor: str, chosen: list[Inquiry], now: datetime) -> list[EvidenceRequest]:
    """The requests and their audit events, each inserted in one statement, in one transaction."""
    due = evidence_due(now)
    opened = [
        EvidenceRequest(
            member=member,
            inquiry=inquiry,
            consent=inquiry.consent,
            subject_token=inquiry.subject_token,
            purpose=inquiry.purpose,
            expected_sha256=inquiry.consent.evidence_sha256,
            opened_by=actor,
            opened_at=now,
            due_at=due,
        )
        for inquiry in chosen
    ]
    if not opened:
        return []
    with transaction.atomic():
        EvidenceRequest.objects.bulk_create(opened)
        insert_sealed(
            [
                {
                    "action": Action.EVIDENCE_OPEN,
                    "actor": actor,
                    "member_code": member.code,
                    "object_type": "evidence_request",
                    "object_id": request.pk,
                    "subject_token": request.subject_token,
                    "details": {"inquiry": str(request.inquiry_id), "due_at": due.isoformat()},
                }
                for request in opened
            ]
        )
    return opened


# --- the member's side (API) -----------------------------------------------------------------


def evidence_request_get(*, caller: Caller, request_id: Any, action: str) -> EvidenceRequest:
    """One of the caller's requests; another member's is not found (audited as denied)."""
    return owned_or_404(
        caller, EvidenceRequest.objects.all(), request_id, action=action, object_type="evidence_request"
    )


def _already_answered(caller: Caller, request: EvidenceRequest) -> ApiError:
    audit_denied(
        caller,
        Action.EVIDENCE_ANSWER,
        "already_answered",
        subject_token=request.subject_token,
        object_type="evidence_request",
        object_id=request.pk,
    )
    return ApiError(409, "already_answered", f"This evidence request was answered on {request.answered_at:%Y-%m-%d}.")


def hash_stream(read: Callable[[int], bytes], *, limit: int) -> tuple[str, int]:
    """SHA-256 and size of a body read in blocks; PayloadTooLarge past `limit` bytes. Nothing kept."""
    hashed = hash_blocks(
        read,
        block_size=READ_BLOCK,
        limit=limit,
        too_large=lambda: PayloadTooLarge(f"An evidence document may be at most {limit} bytes."),
    )
    return hashed.sha256, hashed.size


def evidence_answer(
    *, caller: Caller, request_id: Any, read: Callable[[int], bytes], declared_size: int | None
) -> EvidenceRequest:
    """Hash the document as it streams in and give the verdict: `verified` when its SHA-256 is the
    consent's `evidence_sha256`, else `mismatch`. One answer only (409 `already_answered`)."""
    request = evidence_request_get(caller=caller, request_id=request_id, action=Action.EVIDENCE_ANSWER)
    if request.answered:
        raise _already_answered(caller, request)
    refusal = {"subject_token": request.subject_token, "object_type": "evidence_request", "object_id": request.pk}
    try:
        if declared_size is not None and declared_size > MAX_DOCUMENT_BYTES:
            raise PayloadTooLarge(f"An evidence document may be at most {MAX_DOCUMENT_BYTES} bytes.")
        document_sha256, size = hash_stream(read, limit=MAX_DOCUMENT_BYTES)
    except PayloadTooLarge:
        audit_denied(caller, Action.EVIDENCE_ANSWER, "payload_too_large", limit=MAX_DOCUMENT_BYTES, **refusal)
        raise
    if size == 0:
        audit_denied(caller, Action.EVIDENCE_ANSWER, "malformed_request", **refusal)
        raise Malformed("The body must be the signed authorisation document itself; it was empty.")
    with transaction.atomic():
        request = EvidenceRequest.objects.select_for_update().get(pk=request.pk)
        if request.answered:  # answered by a concurrent call meanwhile
            answered = request
        else:
            answered = None
            now = timezone.now()
            verified = hmac.compare_digest(document_sha256, request.expected_sha256)
            request.status = EvidenceStatus.VERIFIED if verified else EvidenceStatus.MISMATCH
            request.answered_at = now
            request.document_sha256 = document_sha256
            request.document_size = size
            request.save(update_fields=["status", "answered_at", "document_sha256", "document_size"])
            audit_write(
                action=Action.EVIDENCE_ANSWER,
                actor=caller.actor,
                member_code=caller.member.code,
                object_type="evidence_request",
                object_id=request.pk,
                subject_token=request.subject_token,
                details={"verdict": request.status, "size": size, "sha256": document_sha256, "late": request.late},
            )
    if answered is not None:
        raise _already_answered(caller, answered)
    return request


# --- the schedule (run_worker) -----------------------------------------------------------------


def evidence_mark_overdue(*, actor: str, now: datetime | None = None) -> int:
    """Every open request past its due date becomes `overdue`, each audited; how many did."""
    now = now or timezone.now()
    marked = 0
    with transaction.atomic():
        due = list(
            EvidenceRequest.objects.select_for_update(skip_locked=True)
            .filter(status=EvidenceStatus.OPEN, due_at__lt=now)
            .select_related("member")
            .order_by("due_at")
        )
        for request in due:
            request.status = EvidenceStatus.OVERDUE
            request.overdue_at = now
            request.save(update_fields=["status", "overdue_at"])
            audit_write(
                action=Action.EVIDENCE_OVERDUE,
                actor=actor,
                member_code=request.member.code,
                object_type="evidence_request",
                object_id=request.pk,
                subject_token=request.subject_token,
                details={"due_at": request.due_at.isoformat()},
            )
            marked += 1
    return marked


# --- outcomes per member (console) -------------------------------------------------------------


def evidence_outcomes(now: datetime | None = None) -> list[dict]:
    """Per member with any request: counts by status as of now (an open request past due counts as
    overdue) and the rates of the decided ones, worst first."""
    now = now or timezone.now()
    rows = (
        EvidenceRequest.objects.order_by()
        .values("member_id", "member__code", "member__name")
        .annotate(
            total=Count("id"),
            **{status: Count("id", filter=evidence_status_q(status, now)) for status in EvidenceStatus.values},
            late=Count("id", filter=Q(answered_at__gt=F("due_at"))),
        )
    )
    outcomes = []
    for row in rows:
        decided = row["verified"] + row["mismatch"] + row["overdue"]
        outcomes.append(
            {
                "member_id": row["member_id"],
                "code": row["member__code"],
                "name": row["member__name"],
                "total": row["total"],
                "open": row["open"],
                "verified": row["verified"],
                "mismatch": row["mismatch"],
                "overdue": row["overdue"],
                "late": row["late"],
                "decided": decided,
                "verified_rate": _percent(row["verified"], decided),
                "mismatch_rate": _percent(row["mismatch"], decided),
                "overdue_rate": _percent(row["overdue"], decided),
            }
        )
    outcomes.sort(key=lambda o: (-(o["mismatch"] + o["overdue"]), o["code"]))
    return outcomes


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "—"
