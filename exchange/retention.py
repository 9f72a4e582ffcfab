"""Retention: delete what the exchange may no longer keep, in batches, with one audit event per run.

Negative records are kept `EXCHANGE_RETENTION_YEARS` after they end (settled or written off)
or after they were withdrawn, then go with their versions and disputes; consents go that long
after they expired or were revoked, inquiries that long after they were made, finished bulk
submissions (with their row errors) that long after they finished; idempotency keys after 48 hours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.actions import Action
from audit.services import audit_write
from exchange.models import (
    Consent,
    Dispute,
    IdempotencyKey,
    Inquiry,
    Record,
    RecordStatus,
    RecordVersion,
    Submission,
    SubmissionError,
)

IDEMPOTENCY_KEEP = timedelta(hours=48)
BATCH_SIZE = 500


@dataclass
class PurgeCounts:
    records: int = 0
    record_versions: int = 0
    disputes: int = 0
    inquiries: int = 0
    consents: int = 0
    submissions: int = 0
    submission_errors: int = 0
    idempotency_keys: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    @property
    def total(self) -> int:
        return sum(self.as_dict().values())


_Moment = TypeVar("_Moment", date, datetime)


def years_before(moment: _Moment, years: int) -> _Moment:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


def expired(now: datetime | None = None) -> dict[str, QuerySet]:
    """The rows retention no longer allows, by kind (records bring their versions and disputes)."""
    now = now or timezone.now()
    years = settings.EXCHANGE_RETENTION_YEARS
    cutoff = years_before(now, years)
    return {
        "records": Record.objects.filter(
            Q(
                status__in=[RecordStatus.SETTLED, RecordStatus.WRITTEN_OFF],
                settled_on__lt=years_before(timezone.localdate(now), years),
            )
            | Q(withdrawn_at__lt=cutoff)
        ),
        "inquiries": Inquiry.objects.filter(created_at__lt=cutoff),
        # A consent ends when it expires or is revoked, whichever comes first.
        "consents": Consent.objects.filter(Q(expires_at__lt=cutoff) | Q(revoked_at__lt=cutoff)),
        "submissions": Submission.objects.filter(finished_at__lt=cutoff),
        "idempotency_keys": IdempotencyKey.objects.filter(created_at__lt=now - IDEMPOTENCY_KEEP),
    }


def _count(plan: dict[str, QuerySet]) -> PurgeCounts:
    records = plan["records"]
    return PurgeCounts(
        records=records.count(),
        record_versions=RecordVersion.objects.filter(record__in=records.values("pk")).count(),
        disputes=Dispute.objects.filter(record__in=records.values("pk")).count(),
        inquiries=plan["inquiries"].count(),
        consents=plan["consents"].count(),
        submissions=plan["submissions"].count(),
        submission_errors=SubmissionError.objects.filter(submission__in=plan["submissions"].values("pk")).count(),
        idempotency_keys=plan["idempotency_keys"].count(),
    )


def _delete_in_batches(queryset: QuerySet, batch_size: int, progress: Callable[[int], object]) -> dict[str, int]:
    """Delete by primary-key batches so memory stays flat; only the keys are ever loaded."""
    model = queryset.model
    deleted: dict[str, int] = {}
    while True:
        pks = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not pks:
            return deleted
        _total, per_model = model.objects.filter(pk__in=pks).only("pk").delete()
        for label, count in per_model.items():
            deleted[label] = deleted.get(label, 0) + count
        progress(len(pks))


def purge_expired(
    *,
    actor: str,
    dry_run: bool = False,
    now: datetime | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[int], object] = lambda n: None,
    on_total: Callable[[int], object] = lambda n: None,
) -> PurgeCounts:
    """Delete (or, with `dry_run`, only count) what retention no longer allows.

    One transaction for the whole run, ending with one `retention.purge` audit event holding
    counts only: a purge happens with its event or not at all. The rows concerned are years
    old, so holding them locked for the run disturbs no one. A dry run is audited too (it reads
    the data), with `dry_run: true`.
    """
    now = now or timezone.now()
    with transaction.atomic():
        plan = expired(now)
        planned = _count(plan)
        on_total(
            planned.records + planned.inquiries + planned.consents + planned.submissions + planned.idempotency_keys
        )
        if dry_run:
            counts = planned
        else:
            counts = PurgeCounts()
            records = _delete_in_batches(plan["records"], batch_size, progress)
            counts.records = records.get(Record._meta.label, 0)
            counts.record_versions = records.get(RecordVersion._meta.label, 0)
            counts.disputes = records.get(Dispute._meta.label, 0)
            counts.inquiries = _delete_in_batches(plan["inquiries"], batch_size, progress).get(Inquiry._meta.label, 0)
            counts.consents = _delete_in_batches(plan["consents"], batch_size, progress).get(Consent._meta.label, 0)
            submissions = _delete_in_batches(plan["submissions"], batch_size, progress)
            counts.submissions = submissions.get(Submission._meta.label, 0)
            counts.submission_errors = submissions.get(SubmissionError._meta.label, 0)
            counts.idempotency_keys = _delete_in_batches(plan["idempotency_keys"], batch_size, progress).get(
                IdempotencyKey._meta.label, 0
            )
        audit_write(
            action=Action.RETENTION_PURGE,
            actor=actor,
            object_type="retention",
            details={
                "dry_run": dry_run,
                "retention_years": settings.EXCHANGE_RETENTION_YEARS,
                **counts.as_dict(),
            },
        )
    return counts
