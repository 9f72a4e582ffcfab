"""Blind subjects: evaluating a member's blinded elements under the exchange's VOPRF key.

The elements are never stored; the call is audited as one event with its count, and the elements
count against the member's OPRF quota of any rolling 24 hours (members.limits).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from audit.actions import Action
from audit.services import audit_write
from core import oprf
from core.problems import Invalid
from exchange.services import Caller, audit_denied
from members.limits import Quota, quota_take


def oprf_evaluate(*, caller: Caller, blinded: Sequence[object]) -> oprf.Evaluation:
    """BlindEvaluate 1-1000 base64 elements with one batched proof; 422 lists every bad element by index."""
    try:
        result = oprf.evaluate_encoded(blinded)
    except oprf.BadElements as exc:
        audit_denied(caller, Action.OPRF_EVALUATE, "validation_failed", count=len(blinded), errors=len(exc.errors))
        raise Invalid([{"index": i, "field": "blinded", "message": m} for i, m in exc.errors]) from None
    # Counted against the member's OPRF elements per 24 hours (429 quota_exceeded past it, nothing counted).
    quota_take(caller.member, Quota.OPRF, action=Action.OPRF_EVALUATE, amount=len(result.evaluated))
    # Audited before the answer leaves: an evaluation that cannot be recorded is not returned.
    with transaction.atomic():
        audit_write(
            action=Action.OPRF_EVALUATE,
            actor=caller.actor,
            member_code=caller.member.code,
            details={"count": len(result.evaluated), "key_id": result.key_id},
        )
    return result
