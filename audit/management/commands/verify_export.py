"""`manage.py verify_export FILE`: check an export against its signed manifest, offline."""

from django.core.management.base import BaseCommand, CommandError

from audit.export import verify_export


class Command(BaseCommand):
    help = "Check an audit export's SHA-256, manifest signature and per-line hashes. Exit 0 or non-zero."
    requires_system_checks = []  # an auditor's machine needs no exchange secrets

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument(
            "--public-key", metavar="B64", help="the exchange's published key; default: the one in the manifest"
        )

    def handle(self, *args, **options):
        result = verify_export(options["file"], public_key=options["public_key"])
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        if not result.ok:
            raise CommandError(f"FAIL {result.message}")
        self.stdout.write(result.message)
