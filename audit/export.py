"""Compliance exports of sealed audit events, with a signed manifest, and their verification.

An export is a JSON Lines or CSV file of sealed events in `seq` order, each with every field
(seq, prev_hash and hash included), and `FILE.manifest.json`: count, first and last event,
filters, the file's SHA-256, the public key and an Ed25519 signature. Verifying needs nothing
but the two files and the public key.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from audit.actions import Action
from audit.chain import (
    EXPORT_FIELDS,
    GENESIS,
    ROW_COLUMNS,
    NotCanonical,
    canonical_json,
    iso_utc,
    link_hash,
    row_fields,
)
from audit.models import AuditEvent
from audit.sealing import newest_sealed
from audit.services import audit_write
from audit.signing import manifest_signature_valid, public_key_b64, sign_manifest

FORMATS = ("jsonl", "csv")
MANIFEST_SUFFIX = ".manifest.json"
MANIFEST_KIND = "exchange-audit-export"
MANIFEST_VERSION = 1
CHUNK_SIZE = 2000
_READ_BLOCK = 1024 * 1024


class ExportError(ValueError):
    pass


def manifest_path(path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(path)}{MANIFEST_SUFFIX}")


def render_manifest(manifest: dict[str, Any]) -> str:
    """The one accepted spelling of a manifest, so that no byte of it can change unnoticed."""
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n"


def parse_bound(value: str | None, *, end: bool) -> tuple[datetime | None, str | None, bool]:
    """A --since/--until value: an ISO date (the whole day, in UTC) or an ISO datetime (UTC if
    naive). Returns (moment, its canonical text, whether the bound is exclusive)."""
    if not value:
        return None, None, False
    day = parse_date(value) if len(value) == 10 else None
    if day is not None:
        if end:  # --until a date includes that whole day: stop before the next one
            return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC), day.isoformat(), True
        return datetime.combine(day, time.min, tzinfo=UTC), day.isoformat(), False
    moment = parse_datetime(value)
    if moment is not None:
        if timezone.is_naive(moment):
            moment = moment.replace(tzinfo=UTC)
        return moment, iso_utc(moment), False
    raise ExportError(f"{value!r} is not an ISO date or datetime")


def _rows_to_text(fmt: str):
    if fmt == "jsonl":

        def render(record: dict[str, Any]) -> str:
            return canonical_json(record) + "\n"

        return None, render

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def render_csv(record: dict[str, Any]) -> str:
        writer.writerow([canonical_json(record[name]) if name == "details" else record[name] for name in EXPORT_FIELDS])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    header = ",".join(EXPORT_FIELDS) + "\n"
    return header, render_csv


def _end(record: dict[str, Any], *, with_prev: bool) -> dict[str, Any]:
    """How the manifest names its first (with prev_hash) and last event."""
    end = {"seq": record["seq"], "id": record["id"], "hash": record["hash"]}
    if with_prev:
        end["prev_hash"] = record["prev_hash"]
    return end


def export_events(
    *,
    output: str | os.PathLike,
    fmt: str = "jsonl",
    since: str | None = None,
    until: str | None = None,
    member: str | None = None,
    actor: str,
    progress: bool = False,
) -> dict[str, Any]:
    """Write the export and its manifest; audited as `audit.export` (counts only). Returns the manifest."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}")
    start, since_text, _ = parse_bound(since, end=False)
    stop, until_text, stop_exclusive = parse_bound(until, end=True)
    output = Path(output)

    # Only what was sealed when the export began: later seals cannot slip into a half-written file.
    head_seq, head_hash = newest_sealed() or (0, GENESIS)
    events = AuditEvent.objects.filter(seq__isnull=False, seq__lte=head_seq).order_by("seq")
    if start is not None:
        events = events.filter(occurred_at__gte=start)
    if stop is not None:
        events = events.filter(occurred_at__lt=stop) if stop_exclusive else events.filter(occurred_at__lte=stop)
    if member:
        events = events.filter(member_code=member)
    filters = {"member": member or None, "since": since_text, "until": until_text}
    filtered = any(value is not None for value in filters.values())

    digest = hashlib.sha256()
    header, render = _rows_to_text(fmt)
    count, first, last = 0, None, None
    partial = output.with_name(output.name + ".part")
    total = events.count() if progress else None
    # disable=None: a bar only when stderr is a terminal.
    with open(partial, "wb") as fh, tqdm(total=total, disable=None if progress else True, unit="event") as bar:
        if header:
            data = header.encode("utf-8")
            digest.update(data)
            fh.write(data)
        for row in events.values(*ROW_COLUMNS).iterator(chunk_size=CHUNK_SIZE):
            record = row_fields(row)
            data = render(record).encode("utf-8")
            digest.update(data)
            fh.write(data)
            if first is None:
                first = _end(record, with_prev=True)
            last = _end(record, with_prev=False)
            count += 1
            bar.update(1)
    os.replace(partial, output)

    manifest: dict[str, Any] = {
        "kind": MANIFEST_KIND,
        "version": MANIFEST_VERSION,
        "file": output.name,
        "format": fmt,
        "count": count,
        "first": first,
        "last": last,
        "filters": filters,
        "contiguous": not filtered,
        "chain_head": {"seq": head_seq, "hash": head_hash},
        "created_at": iso_utc(timezone.now()),
        "sha256": digest.hexdigest(),
        "public_key": public_key_b64(),
    }
    manifest["signature"] = sign_manifest(manifest)
    target = manifest_path(output)
    partial_manifest = target.with_name(target.name + ".part")
    partial_manifest.write_text(render_manifest(manifest), encoding="ascii")
    os.replace(partial_manifest, target)

    with transaction.atomic():
        audit_write(
            action=Action.AUDIT_EXPORT,
            actor=actor,
            object_type="audit_export",
            details={"count": count, "format": fmt, "filtered": filtered},
        )
    return manifest


@dataclass
class ExportCheck:
    ok: bool
    message: str
    count: int = 0
    warnings: list[str] = field(default_factory=list)


def _fail(message: str, *, count: int = 0, warnings: list[str] | None = None) -> ExportCheck:
    return ExportCheck(False, message, count, warnings or [])


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _jsonl_records(path: Path):
    with open(path, encoding="utf-8", newline="\n") as fh:
        for line in fh:
            record = json.loads(line)
            if not isinstance(record, dict) or set(record) != set(EXPORT_FIELDS):
                raise ExportError("a line does not hold exactly the export fields")
            yield record


def _csv_records(path: Path):
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        if next(reader, None) != list(EXPORT_FIELDS):
            raise ExportError("the CSV header is not the export header")
        for row in reader:
            if len(row) != len(EXPORT_FIELDS):
                raise ExportError("a CSV row does not hold exactly the export fields")
            record: dict[str, Any] = dict(zip(EXPORT_FIELDS, row, strict=True))
            record["id"] = int(record["id"])
            record["seq"] = int(record["seq"])
            record["details"] = json.loads(record["details"])
            yield record


def verify_export(path: str | os.PathLike, *, public_key: str | None = None) -> ExportCheck:
    """Check an export against its manifest with nothing but the files and a public key."""
    path = Path(path)
    warnings: list[str] = []
    try:
        raw = manifest_path(path).read_bytes()
        manifest = json.loads(raw.decode("ascii"))
    except (OSError, ValueError) as exc:
        return _fail(f"manifest unreadable: {exc}")
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        return _fail("manifest is not an audit export manifest")
    try:
        canonical = render_manifest(manifest).encode("ascii")
    except (ValueError, TypeError):
        canonical = b""
    if raw != canonical:
        return _fail("manifest was altered: it is not in the form it was written in")

    stated_key = manifest.get("public_key")
    if public_key is None:
        key = stated_key
        warnings.append(
            "verified with the public key written in the manifest: compare it with the exchange's published "
            f"key (manage.py audit_public_key) or pass --public-key: {stated_key}"
        )
    else:
        key = public_key.strip()
        if stated_key != key:
            return _fail("manifest was signed by a different key than the trusted one", warnings=warnings)
    if not isinstance(key, str) or not manifest_signature_valid(manifest, key):
        return _fail("manifest signature invalid", warnings=warnings)

    if not path.exists():
        return _fail(f"export file {path} not found", warnings=warnings)
    if _file_sha256(path) != manifest.get("sha256"):
        return _fail("file SHA-256 does not match the manifest: the file was altered", warnings=warnings)

    return _check_lines(path, manifest, warnings)


def _check_lines(path: Path, manifest: dict[str, Any], warnings: list[str]) -> ExportCheck:
    fmt = manifest.get("format")
    if fmt not in FORMATS:
        return _fail(f"unknown format {fmt!r}", warnings=warnings)
    records = _jsonl_records(path) if fmt == "jsonl" else _csv_records(path)
    contiguous = manifest.get("contiguous") is True
    count, prev_seq, prev_hash, first, last = 0, 0, GENESIS, None, None
    try:
        for record in records:
            count += 1
            where = f"line {count} (seq {record['seq']}, id {record['id']})"
            if not isinstance(record["seq"], int) or record["seq"] <= prev_seq:
                return _fail(f"{where}: out of seq order", count=count, warnings=warnings)
            if contiguous and (record["seq"] != prev_seq + 1 or record["prev_hash"] != prev_hash):
                return _fail(f"{where}: prev_hash mismatch: the chain is broken here", count=count, warnings=warnings)
            if link_hash(record["prev_hash"], record) != record["hash"]:
                return _fail(f"{where}: hash mismatch: the event's content was changed", count=count, warnings=warnings)
            if first is None:
                first = _end(record, with_prev=True)
            last = _end(record, with_prev=False)
            prev_seq, prev_hash = record["seq"], record["hash"]
    except (ExportError, NotCanonical, ValueError, KeyError, TypeError) as exc:
        return _fail(f"line {count}: unreadable: {exc}", count=count, warnings=warnings)
    if count != manifest.get("count"):
        return _fail(f"the file holds {count} events, the manifest says {manifest.get('count')}", warnings=warnings)
    if first != manifest.get("first") or last != manifest.get("last"):
        return _fail("first or last event differs from the manifest", count=count, warnings=warnings)
    return ExportCheck(True, f"OK {count} events", count, warnings)
