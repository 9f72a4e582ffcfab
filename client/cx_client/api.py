"""A small client of the exchange's member API (standard library only): the OPRF calls and the
blinding of subjects through them. Further calls (records, consents, inquiries) come later."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from cx_client.blinding import BATCH_SIZE, Batch, KeyPin, PinnedKey, b64

# (method, path under /api/v1/, JSON body or None) -> (status, JSON answer)
Transport = Callable[[str, str, dict | None], tuple[int, dict]]


class ApiError(Exception):
    """The exchange answered with a problem (RFC 9457); `problem` is its JSON body."""

    def __init__(self, status: int, problem: dict):
        super().__init__(f"{status} {problem.get('code', '')}: {problem.get('detail', '')}")
        self.status = status
        self.problem = problem


def http_transport(base_url: str, api_key: str, timeout: float = 60.0) -> Transport:
    """Requests over HTTPS (or HTTP for a local exchange) with the member's bearer key."""
    root = base_url.rstrip("/") + "/api/v1/"
    if not root.startswith(("https://", "http://")):
        raise ValueError("the exchange URL must start with https:// (or http:// for a local one)")

    def send(method: str, path: str, body: dict | None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(root + path, data=data, method=method)  # noqa: S310 - scheme checked above
        request.add_header("Authorization", f"Bearer {api_key}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    return send


class Exchange:
    def __init__(self, transport: Transport):
        self.transport = transport

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        status, answer = self.transport(method, path, body)
        if status >= 400:
            raise ApiError(status, answer)
        return answer

    def oprf_key(self) -> PinnedKey:
        return PinnedKey.from_answer(self._call("GET", "oprf/key"))

    def trusted_key(self, pin: KeyPin, *, accept_new: bool = False) -> PinnedKey:
        """The served key, checked against the pin (see KeyPin.check)."""
        return pin.check(self.oprf_key(), accept_new=accept_new)

    def blind_batch(self, inputs: list[bytes], key: PinnedKey) -> list[bytes]:
        """One evaluation call: the 64-byte outputs of up to 1,000 OPRF inputs, proof checked."""
        batch = Batch.blind(inputs)
        return batch.finalize(self._call("POST", "oprf/evaluate", batch.request_body()), key)

    def blind_values(self, inputs: Iterable[bytes], key: PinnedKey) -> Iterator[str]:
        """The base64 `blind` value of each input, in order, in calls of 1,000."""
        iterator = iter(inputs)
        while chunk := list(islice(iterator, BATCH_SIZE)):
            yield from map(b64, self.blind_batch(chunk, key))
