"""A fake exchange for cx_client's unit tests: a Transport that answers the OPRF calls under a
fixed key with real proofs (so blinding is checked end to end without a server), answers the
other calls from routes a test sets, and records every request (an uploaded file's bytes too)."""

from __future__ import annotations

import base64
from collections.abc import Callable

from cx_client import voprf
from cx_client.api import Request
from cx_client.subjects import oprf_input

Answer = tuple[int, dict | list]
SUBMISSION = "0b6f3c1e-9a7d-4f2e-8c61-0d2a7e4b9f10"  # what the `fake` fixture's upload answers


class FakeExchange:
    def __init__(self, seed: bytes = b"f" * 32):
        self.pair = voprf.derive_key_pair(seed, b"cx-oprf-v1")
        self.requests: list[Request] = []
        self.uploads: list[bytes] = []
        self.block_sizes: list[int] = []  # the size of each block read from an uploaded file
        self.routes: dict[tuple[str, str], Answer | Callable[[Request], Answer]] = {}

    def __call__(self, request: Request) -> Answer:
        self.requests.append(request)
        if request.file is not None:
            reader = request.file.open()
            try:
                blocks = list(iter(reader.read, b""))
            finally:
                reader.close()
            self.block_sizes.extend(map(len, blocks))
            self.uploads.append(b"".join(blocks))
        route = self.routes.get((request.method, request.path))
        if route is not None:
            return route(request) if callable(route) else route
        if (request.method, request.path) == ("GET", "oprf/key"):
            return 200, {
                "suite": voprf.SUITE,
                "mode": "VOPRF",
                "key_id": "ofake",
                "public_key": base64.b64encode(self.pair.public).decode(),
            }
        if (request.method, request.path) == ("POST", "oprf/evaluate"):
            blinded = [base64.b64decode(e) for e in request.json["blinded"]]
            evaluated, proof = voprf.blind_evaluate_batch(self.pair, blinded, voprf.VOPRF)
            return 200, {
                "key_id": "ofake",
                "evaluated": [base64.b64encode(e).decode() for e in evaluated],
                "proof": base64.b64encode(proof).decode(),
            }
        return 404, {"code": "not_found", "detail": "No such object."}

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def evaluations(self) -> list[int]:
        """The element count of each evaluation call."""
        return [len(r.json["blinded"]) for r in self.requests if r.path == "oprf/evaluate"]

    def blind(self, id_type: str, id_number: str, country: str | None = None) -> str:
        """The `blind` value this exchange's key gives a borrower (RFC 9497 Evaluate, no blinding)."""
        return base64.b64encode(voprf.evaluate(self.pair.secret, oprf_input(id_type, id_number, country))).decode()
