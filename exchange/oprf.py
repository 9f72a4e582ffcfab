"""Blind subjects: evaluating a member's blinded elements under the exchange's VOPRF key.

The elements are never stored; the call is audited as one event with its count. The daily OPRF
quota is not enforced here yet.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from audit.actions import Action
from audit.services import audit_write
from core import oprf
from core.problems import Invalid
from exchange.services import Caller


def oprf_evaluate(*, caller: Caller, blinded: Sequence[object]) -> oprf.Evaluation:
    """BlindEvaluate 1-1000 base64 elements with one batched proof; 422 lists every bad element by index."""
    try:
        result = oprf.evaluate_encoded(blinded)
    except oprf.BadElements as exc:
        raise Invalid([{"index": i, "field": "blinded", "message": m} for i, m in exc.errors]) from None
    # Audited before the answer leaves: an evaluation that cannot be recorded is not returned.
    with transaction.atomic():
        audit_write(
            action=Action.OPRF_EVALUATE,
            actor=caller.actor,
            member_code=caller.member.code,
            details={"count": len(result.evaluated), "key_id": result.key_id},
        )
    return result
