"""`manage.py audit_grant_app_role ROLE`: the PostgreSQL rights the application role gets on the audit tables."""

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from audit.triggers import app_role_grants


class Command(BaseCommand):
    help = (
        "Grant a non-owner application role exactly what it needs on the audit tables (SELECT, INSERT, "
        "UPDATE of the seal columns), run as the tables' owner. --print only prints the SQL."
    )

    def add_arguments(self, parser):
        parser.add_argument("role")
        parser.add_argument("--print", action="store_true", dest="print_only", help="print the SQL, run nothing")

    def handle(self, *args, role, print_only, **options):
        try:
            sql = app_role_grants(role)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if print_only:
            for statement in sql:
                self.stdout.write(statement)
            return
        if connection.vendor != "postgresql":
            raise CommandError("role grants apply to PostgreSQL only")
        with transaction.atomic(), connection.cursor() as cursor:
            for statement in sql:
                cursor.execute(statement)
        self.stdout.write(f"granted {role} the audit tables' application rights")
