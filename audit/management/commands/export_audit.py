"""`manage.py export_audit`: a compliance export of sealed events with a signed manifest."""

from django.core.management.base import BaseCommand, CommandError

from audit.actors import cli_actor
from audit.export import FORMATS, ExportError, export_events, manifest_path


class Command(BaseCommand):
    help = "Export sealed audit events in seq order, plus FILE.manifest.json (count, hashes, SHA-256, signature)."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, help="the export file to write")
        parser.add_argument("--since", help="ISO date or datetime (inclusive)")
        parser.add_argument("--until", help="ISO date (that whole day included) or datetime (inclusive)")
        parser.add_argument("--member", help="only events of this member code")
        parser.add_argument("--format", choices=FORMATS, default="jsonl")

    def handle(self, *args, **options):
        try:
            manifest = export_events(
                output=options["output"],
                fmt=options["format"],
                since=options["since"],
                until=options["until"],
                member=options["member"],
                actor=cli_actor("export_audit"),
                progress=True,
            )
        except (ExportError, OSError) as exc:
            raise CommandError(str(exc)) from None
        last = manifest["last"]
        self.stdout.write(
            f"exported {manifest['count']} events"
            + (f" (seq {manifest['first']['seq']} to {last['seq']})" if last else "")
            + f" to {options['output']}; manifest {manifest_path(options['output'])}"
        )
