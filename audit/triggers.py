"""Database triggers that make the audit table append-only, on PostgreSQL and SQLite.

The only UPDATE allowed is the one-time seal: `seq`, `prev_hash` and `hash` go from NULL to
values while every other column stays as it was. DELETE is refused, and TRUNCATE too on
PostgreSQL (unless the table's owner sets `exchange.audit_maintenance` in its session, which
an owner could achieve anyway by disabling the trigger; the application role is not the owner).
Signed checkpoints are append-only outright: no UPDATE, DELETE or TRUNCATE.

Only the table's owner (or a superuser) can drop or disable these triggers: the application
connects as a role that does not own the tables and holds only the rights `app_role_grants` lists.
"""

import re

TABLE = "audit_auditevent"
CHECKPOINT_TABLE = "audit_checkpoint"
SEAL_COLUMNS = ("seq", "prev_hash", "hash")
IMMUTABLE_COLUMNS = (
    "id",
    "occurred_at",
    "actor",
    "member_code",
    "action",
    "object_type",
    "object_id",
    "subject_token",
    "outcome",
    "request_id",
    "details",
)

_pg_same = " AND ".join(f"NEW.{c} IS NOT DISTINCT FROM OLD.{c}" for c in IMMUTABLE_COLUMNS)
_sqlite_same = " AND ".join(f"NEW.{c} IS OLD.{c}" for c in IMMUTABLE_COLUMNS)
# The one UPDATE allowed: the one-time seal, every other column unchanged. Only IS-predicates, so
# it is never NULL (a NULL would let an UPDATE through a WHEN clause).
_pg_seal = (
    "OLD.seq IS NULL AND OLD.hash IS NULL AND NEW.seq IS NOT NULL AND NEW.hash IS NOT NULL "
    f"AND NEW.prev_hash IS NOT NULL AND {_pg_same}"
)

# On PostgreSQL the seal is told apart in the UPDATE trigger's WHEN clause, evaluated by the
# executor itself: the guard function (PL/pgSQL) runs only for what it refuses, not once for every
# sealed event (docs/audit.md, "Throughput"). So the function itself only refuses (or lets the
# owner's maintenance TRUNCATE through).
POSTGRES_INSTALL = [
    """
CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')
     AND current_setting('exchange.audit_maintenance', true) = 'on' THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
""",
    f"CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON {TABLE} "
    f"FOR EACH ROW WHEN (({_pg_seal}) IS NOT TRUE) EXECUTE FUNCTION audit_event_guard();",
    f"CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON {TABLE} FOR EACH ROW EXECUTE FUNCTION audit_event_guard();",
    f"CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_guard();",
]
POSTGRES_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS audit_event_no_truncate ON {TABLE};",
    f"DROP TRIGGER IF EXISTS audit_event_no_delete ON {TABLE};",
    f"DROP TRIGGER IF EXISTS audit_event_no_update ON {TABLE};",
    "DROP FUNCTION IF EXISTS audit_event_guard();",
]

SQLITE_INSTALL = [
    f"""
CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON {TABLE}
WHEN NOT (OLD.seq IS NULL AND OLD.hash IS NULL AND NEW.seq IS NOT NULL
          AND NEW.hash IS NOT NULL AND NEW.prev_hash IS NOT NULL AND {_sqlite_same})
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;
""",
    f"""
CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON {TABLE}
BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;
""",
]
SQLITE_UNINSTALL = [
    "DROP TRIGGER IF EXISTS audit_event_no_delete;",
    "DROP TRIGGER IF EXISTS audit_event_no_update;",
]


POSTGRES_CHECKPOINT_INSTALL = [
    """
CREATE OR REPLACE FUNCTION audit_checkpoint_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')
     AND current_setting('exchange.audit_maintenance', true) = 'on' THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'audit checkpoints are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
""",
    f"CREATE TRIGGER audit_checkpoint_append_only BEFORE UPDATE OR DELETE ON {CHECKPOINT_TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION audit_checkpoint_guard();",
    f"CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON {CHECKPOINT_TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoint_guard();",
]
POSTGRES_CHECKPOINT_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS audit_checkpoint_no_truncate ON {CHECKPOINT_TABLE};",
    f"DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON {CHECKPOINT_TABLE};",
    "DROP FUNCTION IF EXISTS audit_checkpoint_guard();",
]
SQLITE_CHECKPOINT_INSTALL = [
    f"""
CREATE TRIGGER audit_checkpoint_no_update BEFORE UPDATE ON {CHECKPOINT_TABLE}
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: UPDATE refused'); END;
""",
    f"""
CREATE TRIGGER audit_checkpoint_no_delete BEFORE DELETE ON {CHECKPOINT_TABLE}
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only: DELETE refused'); END;
""",
]
SQLITE_CHECKPOINT_UNINSTALL = [
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_delete;",
    "DROP TRIGGER IF EXISTS audit_checkpoint_no_update;",
]


def _pick(vendor: str, postgres: list[str], sqlite: list[str]) -> list[str]:
    if vendor == "postgresql":
        return postgres
    if vendor == "sqlite":
        return sqlite
    raise NotImplementedError(f"no audit triggers for {vendor}")


def event_statements(vendor: str, *, install: bool) -> list[str]:
    """The audit event table's triggers (migration 0002)."""
    if install:
        return _pick(vendor, POSTGRES_INSTALL, SQLITE_INSTALL)
    return _pick(vendor, POSTGRES_UNINSTALL, SQLITE_UNINSTALL)


def checkpoint_statements(vendor: str, *, install: bool) -> list[str]:
    """The checkpoint table's triggers (migration 0003)."""
    if install:
        return _pick(vendor, POSTGRES_CHECKPOINT_INSTALL, SQLITE_CHECKPOINT_INSTALL)
    return _pick(vendor, POSTGRES_CHECKPOINT_UNINSTALL, SQLITE_CHECKPOINT_UNINSTALL)


def statements(vendor: str, *, install: bool) -> list[str]:
    """Every audit trigger: what a test flush lifts and puts back."""
    if install:
        return event_statements(vendor, install=True) + checkpoint_statements(vendor, install=True)
    return checkpoint_statements(vendor, install=False) + event_statements(vendor, install=False)


_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")


def app_role_grants(role: str) -> list[str]:
    """PostgreSQL rights on the audit tables for the application's role, which must not own them:
    read and insert events and checkpoints, and update only the three seal columns (the trigger
    further limits that to the one-time seal). No DELETE, TRUNCATE, or any other UPDATE."""
    if not _ROLE_NAME.fullmatch(role):
        raise ValueError("role must be a plain PostgreSQL identifier")
    seal_columns = ", ".join(SEAL_COLUMNS)
    return [
        f'REVOKE ALL ON {TABLE}, {CHECKPOINT_TABLE} FROM "{role}";',
        f'GRANT SELECT, INSERT ON {TABLE}, {CHECKPOINT_TABLE} TO "{role}";',
        f'GRANT UPDATE ({seal_columns}) ON {TABLE} TO "{role}";',
        # Identity columns need no sequence rights for INSERT; serial ones would.
        f"DO $$ DECLARE s text; BEGIN FOR s IN SELECT pg_get_serial_sequence(t, 'id') FROM unnest("
        f"ARRAY['{TABLE}', '{CHECKPOINT_TABLE}']) AS t LOOP "
        f"IF s IS NOT NULL THEN EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %I', s, '{role}'); END IF; "
        "END LOOP; END $$;",
    ]
