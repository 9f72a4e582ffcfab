"""A small client of the exchange's member API (standard library only): the OPRF calls and the
blinding of subjects through them, records, bulk uploads (streamed from the file), consents and
inquiries.

Every call goes through one `Transport`: a function from a `Request` to `(status, answer)`, the
answer being the decoded JSON body, or a list of objects for a JSON Lines answer. `http_transport`
speaks HTTPS; a test passes a function of its own.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from cx_client.blinding import BATCH_SIZE, BadAnswer, Batch, KeyPin, PinnedKey, b64
from cx_client.identifiers import normalize_subject
from cx_client.subjects import oprf_input_normalised

JSON = "application/json"
JSON_LINES = "application/x-ndjson"
UPLOAD_BLOCK = 1 << 20  # bytes read from an uploaded file at a time

Answer = dict | list[dict]


@dataclass(frozen=True)
class FileBody:
    """A request body streamed from a file as it is sent (a bulk upload): never read whole.
    `on_progress(sent, size)` is called after each block."""

    path: Path
    content_type: str
    on_progress: Callable[[int, int], None] | None = None

    def size(self) -> int:
        return Path(self.path).stat().st_size

    def open(self) -> _Reader:
        return _Reader(open(self.path, "rb"), self.size(), self.on_progress)


class _Reader:
    """read(n) over a file in blocks of UPLOAD_BLOCK (whatever n the sender asks), counting bytes sent."""

    def __init__(self, fh: BinaryIO, size: int, on_progress: Callable[[int, int], None] | None):
        self.fh, self.size, self.on_progress, self.sent = fh, size, on_progress, 0

    def read(self, _n: int = -1) -> bytes:
        block = self.fh.read(UPLOAD_BLOCK)
        self.sent += len(block)
        if block and self.on_progress is not None:
            self.on_progress(self.sent, self.size)
        return block

    def close(self) -> None:
        self.fh.close()


@dataclass(frozen=True)
class Request:
    """One call: `path` is under /api/v1/; the body is `json` (an object), `file` (streamed) or neither."""

    method: str
    path: str
    json: dict | None = None
    file: FileBody | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    accept: str = JSON


Transport = Callable[[Request], tuple[int, Answer]]


class ApiError(Exception):
    """The exchange answered with a problem (RFC 9457); `problem` is its JSON body."""

    def __init__(self, status: int, problem: dict):
        super().__init__(f"{status} {problem.get('code', '')}: {problem.get('detail', '')}")
        self.status = status
        self.problem = problem


class TransportError(Exception):
    """The exchange could not be reached, or the connection failed during the call."""


def decode_answer(status: int, content_type: str, body: bytes) -> Answer:
    """A JSON body as an object; a JSON Lines body as a list of objects. A body that is neither
    (a proxy's HTML error page, say) is a problem for an error status, BadAnswer otherwise."""
    try:
        if content_type == JSON_LINES and status < 400:
            return [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
        return json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        if status >= 400:
            return {"code": "", "detail": f"the exchange answered {content_type or 'a body'} that is not JSON"}
        raise BadAnswer(f"the exchange answered {status} with {content_type or 'a body'} that is not JSON") from None


def http_transport(base_url: str, api_key: str, timeout: float = 60.0) -> Transport:
    """Requests over HTTPS (or HTTP for a local exchange) with the member's bearer key. A file
    body is streamed with its Content-Length; network failures raise TransportError."""
    root = base_url.rstrip("/") + "/api/v1/"
    if not root.startswith(("https://", "http://")):
        raise ValueError("the exchange URL must start with https:// (or http:// for a local one)")

    def send(req: Request) -> tuple[int, Answer]:
        headers = {"Authorization": f"Bearer {api_key}", "Accept": req.accept, **req.headers}
        reader = None
        data: bytes | _Reader | None = None
        if req.json is not None:
            data = json.dumps(req.json).encode()
            headers["Content-Type"] = JSON
        elif req.file is not None:
            data = reader = req.file.open()
            headers["Content-Type"] = req.file.content_type
            headers["Content-Length"] = str(reader.size)
        request = urllib.request.Request(root + req.path, data=data, headers=headers, method=req.method)  # noqa: S310 - scheme checked above
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, decode_answer(
                    response.status, response.headers.get_content_type(), response.read()
                )
        except urllib.error.HTTPError as exc:
            return exc.code, decode_answer(exc.code, exc.headers.get_content_type(), exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"{req.method} {req.path}: {reason}") from None
        finally:
            if reader is not None:
                reader.close()

    return send


def subject_fields(id_type: str, id_number: str, country: str | None = None) -> tuple[str, str, bytes]:
    """(id_type, normalised country, OPRF input) of a borrower; raises IdentifierError."""
    normalised, normalised_country = normalize_subject(id_type, id_number, country)
    return id_type, normalised_country, oprf_input_normalised(id_type, normalised, normalised_country)


class Exchange:
    def __init__(self, transport: Transport):
        self.transport = transport

    def _call(self, method: str, path: str, body: dict | None = None, **options) -> Answer:
        status, answer = self.transport(Request(method, path, json=body, **options))
        if status >= 400:
            raise ApiError(status, answer if isinstance(answer, dict) else {})
        return answer

    def _object(self, method: str, path: str, body: dict | None = None, **options) -> dict:
        answer = self._call(method, path, body, **options)
        if not isinstance(answer, dict):
            raise BadAnswer(f"{method} {path}: the answer is not a JSON object")
        return answer

    @staticmethod
    def _keyed(idempotency_key: str | None) -> dict:
        return {"headers": {"Idempotency-Key": idempotency_key}} if idempotency_key else {}

    # --- blind subjects -----------------------------------------------------------------------

    def oprf_key(self) -> PinnedKey:
        return PinnedKey.from_answer(self._object("GET", "oprf/key"))

    def trusted_key(self, pin: KeyPin, *, accept_new: bool = False) -> PinnedKey:
        """The served key, checked against the pin (see KeyPin.check)."""
        return pin.check(self.oprf_key(), accept_new=accept_new)

    def blind_batch(self, inputs: list[bytes], key: PinnedKey) -> list[bytes]:
        """One evaluation call: the 64-byte outputs of up to 1,000 OPRF inputs, proof checked."""
        batch = Batch.blind(inputs)
        return batch.finalize(self.evaluate(batch), key)

    def evaluate(self, batch: Batch) -> dict:
        """The exchange's answer to one blinded batch, unchecked (Batch.finalize checks it): the
        network part of blind_batch, which cx blind-file runs beside its blinding of the next."""
        return self._object("POST", "oprf/evaluate", batch.request_body())

    def blind_values(self, inputs: Iterable[bytes], key: PinnedKey) -> Iterator[str]:
        """The base64 `blind` value of each input, in order, in calls of 1,000."""
        iterator = iter(inputs)
        while chunk := list(islice(iterator, BATCH_SIZE)):
            yield from map(b64, self.blind_batch(chunk, key))

    def blind_subject(self, id_type: str, id_number: str, country: str | None, key: PinnedKey) -> dict:
        """One borrower as a blind subject `{"id_type", "blind"[, "country"]}` (one evaluation
        call); the ID is validated first and raises IdentifierError without any call."""
        id_type, normalised_country, inp = subject_fields(id_type, id_number, country)
        [value] = self.blind_values([inp], key)
        subject = {"id_type": id_type, "blind": value}
        if normalised_country:
            subject["country"] = normalised_country
        return subject

    # --- records and bulk files ---------------------------------------------------------------

    def submit_records(self, records: list[dict], idempotency_key: str | None = None) -> list[dict]:
        """`POST records` (1 to 1,000, all or nothing): the `results`, one per record, in order."""
        answer = self._object("POST", "records", {"records": list(records)}, **self._keyed(idempotency_key))
        results = answer.get("results")
        if not isinstance(results, list):
            raise BadAnswer("the records answer has no results list")
        return results

    def upload(self, path: Path, content_type: str, *, on_progress: Callable[[int, int], None] | None = None) -> dict:
        """`POST submissions` with the file streamed as the body (text/csv or application/x-ndjson):
        `{"id", "status", "duplicate"}`. `on_progress(sent, size)` follows the bytes sent."""
        status, answer = self.transport(
            Request("POST", "submissions", file=FileBody(Path(path), content_type, on_progress))
        )
        if status >= 400:
            raise ApiError(status, answer if isinstance(answer, dict) else {})
        if not isinstance(answer, dict) or "id" not in answer:
            raise BadAnswer("the upload's answer has no submission id")
        return answer

    def submission(self, submission_id: str) -> dict:
        """`GET submissions/{id}`: status (queued, processing, completed, failed) and counts."""
        return self._object("GET", f"submissions/{submission_id}")

    def submission_errors(self, submission_id: str) -> list[dict]:
        """`GET submissions/{id}/errors` as JSON Lines: one `{"line", "field", "message"}` per rejected row."""
        answer = self._call("GET", f"submissions/{submission_id}/errors", accept=JSON_LINES)
        if isinstance(answer, dict):  # an exchange that answered the JSON form instead
            answer = answer.get("results")
        if not isinstance(answer, list) or not all(isinstance(row, dict) for row in answer):
            raise BadAnswer("the errors answer is not a list of objects")
        return answer

    # --- consents and inquiries ---------------------------------------------------------------

    def register_consent(
        self,
        subject: dict,
        *,
        purpose: str,
        channel: str,
        granted_at: str,
        expires_at: str,
        evidence_sha256: str,
        idempotency_key: str | None = None,
    ) -> dict:
        """`POST consents`: the registered consent (`id`, `status`, ...)."""
        body = {
            "subject": subject,
            "purpose": purpose,
            "channel": channel,
            "granted_at": granted_at,
            "expires_at": expires_at,
            "evidence_sha256": evidence_sha256,
        }
        return self._object("POST", "consents", body, **self._keyed(idempotency_key))

    def inquire(self, subject: dict, consent_id: str, purpose: str, *, idempotency_key: str | None = None) -> dict:
        """`POST inquiries`: the borrower's summary under one of your active consents."""
        body = {"subject": subject, "consent_id": str(consent_id), "purpose": purpose}
        return self._object("POST", "inquiries", body, **self._keyed(idempotency_key))
