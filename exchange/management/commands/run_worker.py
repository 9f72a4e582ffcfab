"""`run_worker [--once]`: does the queued background work until stopped (or, with --once, until
the queue is drained): bulk submissions, plus the audit sealing backstop on every round, and every
EXCHANGE_ALERT_INTERVAL_SECONDS the compliance round (overdue evidence requests, alert rules)."""

from __future__ import annotations

import logging
import time

from django.core.management import call_command
from django.core.management.base import BaseCommand

from audit.actors import cli_actor
from exchange.bulk import worker
from exchange.schedule import compliance_schedule
from members.limits import flood_events_write

logger = logging.getLogger(__name__)


def _database_backend() -> bool:
    """Whether the default task backend keeps its queue in this database (so this command runs it);
    another backend (django-tasks-rq, ...) has its own workers and only needs the sweeps here."""
    from django_tasks import task_backends

    try:
        from django_tasks_db import DatabaseBackend
    except ImportError:  # pragma: no cover - the backend package is a requirement
        return False
    return isinstance(task_backends["default"], DatabaseBackend)


def _flood_events_write() -> None:
    """The events of ended refusal-flood minutes, and the expired limit counters swept: a failure
    is logged (its kind only: a flood's key names a member or an address) and retried next round,
    never the end of the worker."""
    try:
        flood_events_write(sweep=True)
    except Exception as exc:  # noqa: BLE001 - the counts stay in the store for the next round
        logger.error("flood events not written this round (%s); retried next round", type(exc).__name__)


class Command(BaseCommand):
    help = (
        "Run background work (bulk submissions, audit sealing backstop, overdue evidence requests and compliance "
        "alerts on schedule); --once drains the queue, does one compliance round and exits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="drain the queue, then exit")
        parser.add_argument("--interval", type=float, default=2.0, help="seconds between rounds when idle")

    def handle(self, *args, once: bool, interval: float, verbosity: int, **options):
        compliance = compliance_schedule(cli_actor("run_worker"))
        while True:
            recovered = worker.submissions_recover()
            if recovered:
                logger.info("re-enqueued %d unfinished submissions", recovered)
            if _database_backend():
                # The DB backend's own worker, in batch mode: runs every ready task, then returns.
                call_command(
                    "db_worker",
                    "--batch",
                    "--no-reload",
                    "--no-startup-delay",
                    "--queue-name=*",
                    "--interval=0",
                    verbosity=max(verbosity - 1, 0),
                )
            compliance.tick()
            worker.seal_backstop()
            _flood_events_write()
            if once:
                return
            time.sleep(interval)
