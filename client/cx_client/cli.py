"""`cx`: the member's command line. Today `cx key` (fetch and pin the exchange's OPRF key),
`cx blind` (one borrower's blind value) and `cx blind-file` (a bulk CSV's subjects blinded);
uploads, consents and inquiries come later.

The exchange and key come from CX_URL and CX_API_KEY; the pin lives in CX_PIN_FILE
(default ~/.config/cx/oprf-key.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from cx_client.api import ApiError, Exchange, http_transport
from cx_client.blindfile import BatchFailed, FileError, blind_file
from cx_client.blinding import BadAnswer, KeyChanged, KeyPin, b64
from cx_client.identifiers import IdentifierError
from cx_client.subjects import oprf_input


def _pin() -> KeyPin:
    default = Path.home() / ".config" / "cx" / "oprf-key.json"
    return KeyPin(Path(os.environ.get("CX_PIN_FILE") or default))


def _exchange() -> Exchange:
    url, key = os.environ.get("CX_URL"), os.environ.get("CX_API_KEY")
    if not url or not key:
        raise SystemExit("cx: set CX_URL (the exchange, https://...) and CX_API_KEY (your API key)")
    return Exchange(http_transport(url, key))


def cmd_key(args) -> int:
    key = _exchange().trusted_key(_pin(), accept_new=args.accept_new_key)
    print(json.dumps({"key_id": key.key_id, "public_key": b64(key.public_key), "pinned_in": str(_pin().path)}))
    return 0


def cmd_blind(args) -> int:
    try:
        inp = oprf_input(args.id_type, args.id_number, args.country)
    except IdentifierError as exc:
        print(f"cx: {exc.field}: {exc.message}", file=sys.stderr)
        return 2
    exchange = _exchange()
    key = exchange.trusted_key(_pin(), accept_new=args.accept_new_key)
    [value] = exchange.blind_values([inp], key)
    subject = {"id_type": args.id_type, "blind": value}
    if args.country:
        subject["country"] = args.country.strip().upper()
    print(json.dumps(subject))
    return 0


def cmd_blind_file(args) -> int:
    exchange = _exchange()
    key = exchange.trusted_key(_pin(), accept_new=args.accept_new_key)
    try:
        stats = blind_file(Path(args.input), Path(args.output), exchange, key, rejects=args.rejects)
    except BatchFailed as exc:
        print(f"cx: {exc}; {args.output} not written", file=sys.stderr)
        return 1
    except (FileError, csv.Error, UnicodeDecodeError, OSError) as exc:
        print(f"cx: {args.input}: {exc}; {args.output} not written", file=sys.stderr)
        return 2
    print(
        f"cx: {stats.blinded:,} rows blinded into {args.output} in {stats.calls} calls, {stats.rejected:,} rejected",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cx", description="The credit exchange's member client.")
    commands = parser.add_subparsers(dest="command", required=True)
    key = commands.add_parser("key", help="fetch the exchange's OPRF public key and pin it (or check the pin)")
    blind = commands.add_parser("blind", help="print one borrower as a blind subject")
    blind.add_argument("id_type", choices=["CN_RIC", "CN_USCC", "CN_MOBILE", "PASSPORT"])
    blind.add_argument("id_number")
    blind.add_argument("--country", help="ISO 3166-1 alpha-2, passports only")
    blind_file_help = (
        "blind a bulk CSV (header with id_type,id_number[,country]) row by row, in calls of 1,000: "
        "OUTPUT has the same columns with id_number replaced by blind; name and the other columns are "
        "copied unchanged (they go to the exchange later with the upload, as before). A row whose ID "
        "is invalid is not sent: it is reported on stderr with its line number and left out of OUTPUT "
        "(with --rejects, also written to that file). OUTPUT appears only once every batch succeeded."
    )
    blind_file_cmd = commands.add_parser("blind-file", help=blind_file_help, description=blind_file_help)
    blind_file_cmd.add_argument("input", help="the CSV to read")
    blind_file_cmd.add_argument("output", help="the CSV to write (via a temporary file beside it, renamed at the end)")
    blind_file_cmd.add_argument(
        "--rejects",
        type=Path,
        metavar="FILE",
        help="also write each invalid row here: its line number, its columns as read, and the error",
    )
    for sub in (key, blind, blind_file_cmd):
        sub.add_argument(
            "--accept-new-key", action="store_true", help="accept and pin a key that differs from the pinned one"
        )
    args = parser.parse_args(argv)
    try:
        return {"key": cmd_key, "blind": cmd_blind, "blind-file": cmd_blind_file}[args.command](args)
    except KeyChanged as exc:
        print(f"cx: {exc}", file=sys.stderr)
        return 3
    except (BadAnswer, ApiError) as exc:
        print(f"cx: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
