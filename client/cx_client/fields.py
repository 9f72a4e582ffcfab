"""The fields of a record and of its subject, and a bulk CSV's columns: one list, read by the
exchange's validation and by this client's checks before anything is sent."""

from __future__ import annotations

RECORD_FIELDS = frozenset(
    {
        "member_reference",
        "subject",
        "product",
        "currency",
        "principal",
        "amount_overdue",
        "days_past_due",
        "status",
        "opened_on",
        "delinquent_since",
        "as_of",
        "notice_sent_on",
        "settled_on",
        "payment_history",
    }
)
SUBJECT_FIELDS = frozenset({"id_type", "id_number", "blind", "name", "country"})
# A CSV row is a record with its subject flattened into its columns.
CSV_COLUMNS = (RECORD_FIELDS - {"subject"}) | SUBJECT_FIELDS
