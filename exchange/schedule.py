"""Periodic compliance work done by `run_worker`: evidence requests past due become `overdue`, and
the alert rules are evaluated, every EXCHANGE_ALERT_INTERVAL_SECONDS."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from exchange.alerts import alerts_evaluate
from exchange.evidence import evidence_mark_overdue

logger = logging.getLogger(__name__)

CATCH_UP = timedelta(hours=24)  # the first round looks this far back
OVERLAP = timedelta(hours=1)  # later rounds look again at the hour before the last one's start


class Every:
    """Runs `job` when first ticked and then at most once per `interval` seconds of `clock` (a
    monotonic clock; tests pass their own). A failing job is logged and tried on the next interval."""

    def __init__(self, interval: float, job: Callable[[], object], clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.job = job
        self.clock = clock
        self.next_at: float | None = None

    def tick(self) -> bool:
        now = self.clock()
        if self.next_at is not None and now < self.next_at:
            return False
        self.next_at = now + self.interval
        try:
            self.job()
        except Exception:
            logger.exception("periodic job %s failed; it runs again in %s s", self.job, self.interval)
        return True


class ComplianceRound:
    """One round: mark overdue evidence requests, then evaluate the rules from where the last
    successful round started (less an hour of overlap; 24 hours back on the first round)."""

    def __init__(self, actor: str, now: Callable[[], datetime] = timezone.now):
        self.actor = actor
        self.now = now
        self.since: datetime | None = None

    def __call__(self) -> None:
        now = self.now()
        marked = evidence_mark_overdue(actor=self.actor, now=now)
        since = (self.since - OVERLAP) if self.since else now - CATCH_UP
        _alerts, new = alerts_evaluate(actor=self.actor, since=since, until=now)
        self.since = now
        if marked or new:
            logger.info("compliance round: %d evidence requests overdue, %d new alerts", marked, new)

    def __repr__(self) -> str:
        return "compliance round"


def compliance_schedule(actor: str, clock: Callable[[], float] = time.monotonic) -> Every:
    return Every(settings.EXCHANGE_ALERT_INTERVAL_SECONDS, ComplianceRound(actor), clock)
