"""`manage.py purge_expired [--dry-run]`: delete what retention no longer allows, audited; print counts."""

from django.core.management.base import BaseCommand
from tqdm import tqdm

from audit.actors import cli_actor
from exchange.retention import BATCH_SIZE, purge_expired


class Command(BaseCommand):
    help = (
        "Delete settled and written-off records (with versions and disputes) ended more than "
        "EXCHANGE_RETENTION_YEARS ago, consents expired or revoked that long ago, inquiries that old, "
        "and idempotency keys older than 48 hours. One audit event with the counts. "
        "--dry-run only counts (and is audited as a dry run)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would go; delete nothing")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="rows deleted per statement")
        parser.add_argument("--progress", action="store_true", help="show a progress bar")

    def handle(self, *args, **options):
        dry_run = options["dry_run"]
        with tqdm(disable=None if options["progress"] and not dry_run else True, unit="row") as bar:

            def on_total(total: int) -> None:
                bar.total = total
                bar.refresh()

            counts = purge_expired(
                actor=cli_actor("purge_expired"),
                dry_run=dry_run,
                batch_size=max(1, options["batch_size"]),
                progress=bar.update,
                on_total=on_total,
            )
        verb = "would delete" if dry_run else "deleted"
        for kind, count in counts.as_dict().items():
            self.stdout.write(f"{verb} {count} {kind.replace('_', ' ')}")
        if dry_run:
            self.stdout.write("dry run: nothing was deleted")
