"""Consent assurance and compliance alerts: evidence requests (spot checks of the signed
authorisation behind an inquiry) and the alerts raised by the rules of exchange/alerts.py.

Imported by exchange/models.py, so these are models of the exchange app like any other.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from exchange.models import Consent, Inquiry, Purpose
from members.models import Member


class EvidenceStatus(models.TextChoices):
    OPEN = "open"
    VERIFIED = "verified"
    MISMATCH = "mismatch"
    OVERDUE = "overdue"


ANSWERED = (EvidenceStatus.VERIFIED, EvidenceStatus.MISMATCH)
UNANSWERED = (EvidenceStatus.OPEN, EvidenceStatus.OVERDUE)


def evidence_status_q(status: str, now) -> Q:
    """The requests whose status, as of `now`, is `status`: an open request past `due_at` is
    already `overdue`, whether or not run_worker has stored it yet (index evidence_status_due_idx)."""
    if status == EvidenceStatus.OPEN:
        return Q(status=EvidenceStatus.OPEN, due_at__gte=now)
    if status == EvidenceStatus.OVERDUE:
        return Q(status=EvidenceStatus.OVERDUE) | Q(status=EvidenceStatus.OPEN, due_at__lt=now)
    return Q(status=status)


class EvidenceRequestQuerySet(models.QuerySet):
    def with_status(self, status: str, now=None) -> EvidenceRequestQuerySet:
        """Filter by the status as read now (`evidence_status_q`), not the stored one."""
        return self.filter(evidence_status_q(status, now or timezone.now()))


class EvidenceRequest(models.Model):
    """The exchange asks a member for the signed authorisation behind one of its inquiries.

    The member answers with the document itself; only its hash, size and the verdict are kept.
    `expected_sha256` is the consent's `evidence_sha256` when the request was opened.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="evidence_requests")
    inquiry = models.ForeignKey(Inquiry, on_delete=models.CASCADE, related_name="evidence_requests")
    consent = models.ForeignKey(Consent, on_delete=models.SET_NULL, null=True, related_name="evidence_requests")
    subject_token = models.CharField(max_length=64)
    purpose = models.CharField(max_length=24, choices=Purpose.choices)
    expected_sha256 = models.CharField("expected SHA-256", max_length=64)
    opened_by = models.CharField(max_length=120, help_text="audit actor who opened the request")
    opened_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=EvidenceStatus.choices, default=EvidenceStatus.OPEN)
    overdue_at = models.DateTimeField(null=True, blank=True, help_text="when it was found unanswered past due")
    answered_at = models.DateTimeField(null=True, blank=True)
    document_sha256 = models.CharField("document SHA-256", max_length=64, blank=True)
    document_size = models.BigIntegerField(null=True, blank=True, help_text="bytes")

    objects = EvidenceRequestQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["inquiry"], name="evidence_request_one_per_inquiry"),
            models.CheckConstraint(condition=Q(status__in=EvidenceStatus.values), name="evidence_status_valid"),
            models.CheckConstraint(
                condition=(
                    Q(status__in=ANSWERED, answered_at__isnull=False, document_size__isnull=False)
                    | Q(status__in=UNANSWERED, answered_at__isnull=True, document_sha256="")
                ),
                name="evidence_answer_consistent",
            ),
            models.CheckConstraint(condition=Q(due_at__gt=models.F("opened_at")), name="evidence_due_after_open"),
        ]
        indexes = [
            models.Index(fields=["member", "-opened_at", "-id"], name="evidence_member_opened_idx"),
            models.Index(fields=["status", "due_at"], name="evidence_status_due_idx"),
        ]

    def __str__(self) -> str:
        return f"evidence request {self.id}"

    @property
    def answered(self) -> bool:
        return self.status in ANSWERED

    def status_at(self, now=None) -> str:
        """The status as of `now`: `overdue` as soon as `due_at` has passed unanswered, before
        run_worker stores it (`status` is the stored one)."""
        if self.status == EvidenceStatus.OPEN and self.due_at < (now or timezone.now()):
            return EvidenceStatus.OVERDUE
        return self.status

    @property
    def current_status(self) -> str:
        return self.status_at()

    @property
    def late(self) -> bool:
        return self.answered_at is not None and self.answered_at > self.due_at


class AlertKind(models.TextChoices):
    INQUIRY_VOLUME = "inquiry_volume", "Inquiry volume"
    CONSENT_DENIALS = "consent_denials", "Consent denials"
    EVIDENCE_REUSE = "evidence_reuse", "Evidence reused"
    EVIDENCE_FAILED = "evidence_failed", "Evidence failed"
    DISPUTE_VOLUME = "dispute_volume", "Dispute volume"
    QUOTA_EXCEEDED = "quota_exceeded", "Quota exceeded"


class AlertStatus(models.TextChoices):
    OPEN = "open"
    CLOSED = "closed"


class ComplianceAlert(models.Model):
    """One rule fired for one member over one window (a clock hour; for disputes, from the first
    dispute of a rolling 24 hours to the last run that still found the member above the threshold).

    Evaluating the rules again updates the alert of the same member, kind and window (its count
    may grow) instead of raising it twice; compliance staff close it once reviewed.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="compliance_alerts")
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    count = models.PositiveIntegerField()
    threshold = models.PositiveIntegerField(help_text="the rule fires when the count exceeds this")
    baseline = models.PositiveIntegerField(null=True, blank=True, help_text="7-day median (inquiry_volume)")
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()
    detail = models.CharField(max_length=300)
    raised_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    emailed_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.CharField(max_length=120, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["member", "kind", "window_start"], name="alert_one_per_window"),
            models.CheckConstraint(condition=Q(kind__in=AlertKind.values), name="alert_kind_valid"),
            models.CheckConstraint(
                condition=(
                    Q(status=AlertStatus.OPEN, closed_at__isnull=True)
                    | Q(status=AlertStatus.CLOSED, closed_at__isnull=False)
                ),
                name="alert_closed_consistent",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-raised_at"], name="alert_status_raised_idx"),
            models.Index(fields=["window_start"], name="alert_window_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} alert {str(self.id)[:8]}"


class InquiryHour(models.Model):
    """A member's distinct subjects in one past clock hour (UTC), kept so that the `inquiry_volume`
    rule reads its 7-day baseline from at most 168 rows per member instead of the inquiries.

    Written by exchange/alerts.py once an hour is final (it ended more than an hour ago), with a
    RolledUpHour beside it, so that an hour without any inquiry is not counted again either.
    """

    id = models.BigAutoField(primary_key=True)
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    subjects = models.PositiveIntegerField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hour", "member"], name="inquiry_hour_unique")]

    def __str__(self) -> str:
        return f"{self.member_id} {self.hour:%Y-%m-%d %H}h: {self.subjects}"


class RolledUpHour(models.Model):
    """A clock hour whose InquiryHour rows are written (none when nobody queried in it)."""

    hour = models.DateTimeField(primary_key=True)

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}h"
