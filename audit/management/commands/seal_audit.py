"""`manage.py seal_audit`: the periodic backstop that seals every committed event and signs the newest."""

from django.core.management.base import BaseCommand

from audit.sealing import pending_count, seal_pending


class Command(BaseCommand):
    help = "Seal every committed audit event not yet sealed and sign a checkpoint of the newest."

    def handle(self, *args, **options):
        result = seal_pending(checkpoint=True)
        checkpoint = result.checkpoint
        signed = (
            f"checkpoint at seq {checkpoint.seq} signed at {checkpoint.signed_at.isoformat()}"
            if checkpoint
            else "no checkpoint (empty chain)"
        )
        self.stdout.write(
            f"sealed {result.sealed} events; chain ends at seq {result.last_seq}; {signed}; "
            f"{pending_count()} events still unsealed"
        )
