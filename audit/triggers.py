"""Database triggers that make the audit table append-only, on PostgreSQL and SQLite.

The only UPDATE allowed is the one-time seal: `seq`, `prev_hash` and `hash` go from NULL to
values while every other column stays as it was. DELETE is refused, and TRUNCATE too on
PostgreSQL (unless the table's owner sets `exchange.audit_maintenance` in its session, which
an owner could achieve anyway by disabling the trigger; the application role is not the owner).
"""

TABLE = "audit_auditevent"
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

POSTGRES_INSTALL = [
    f"""
CREATE OR REPLACE FUNCTION audit_event_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND OLD.hash IS NULL
     AND NEW.seq IS NOT NULL AND NEW.hash IS NOT NULL AND NEW.prev_hash IS NOT NULL
     AND {_pg_same} THEN
    RETURN NEW;
  END IF;
  IF TG_OP = 'TRUNCATE' AND pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = TG_RELID), 'USAGE')
     AND current_setting('exchange.audit_maintenance', true) = 'on' THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
""",
    f"CREATE TRIGGER audit_event_no_update BEFORE UPDATE OR DELETE ON {TABLE} "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_guard();",
    f"CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON {TABLE} "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_guard();",
]
POSTGRES_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS audit_event_no_truncate ON {TABLE};",
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


def statements(vendor: str, *, install: bool) -> list[str]:
    if vendor == "postgresql":
        return POSTGRES_INSTALL if install else POSTGRES_UNINSTALL
    if vendor == "sqlite":
        return SQLITE_INSTALL if install else SQLITE_UNINSTALL
    raise NotImplementedError(f"no audit triggers for {vendor}")
