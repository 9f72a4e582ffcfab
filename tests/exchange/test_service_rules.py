"""The record rules hold in the services themselves, whoever calls them (API, console, commands)."""

import pytest

from audit.actors import cli_actor
from audit.models import AuditEvent
from core.problems import Invalid
from exchange import records
from exchange.models import Record
from exchange.services import Caller
from tests.factories import record

pytestmark = pytest.mark.django_db


def _caller(persona) -> Caller:
    return Caller(member=persona.member, actor=cli_actor("test"))


@pytest.mark.parametrize("count", [0, records.MAX_BATCH + 1])
def test_records_submit_refuses_a_batch_out_of_bounds(bank_a, count):
    with pytest.raises(Invalid) as refused:
        records.records_submit(caller=_caller(bank_a), raw_records=[record(f"L-{i}") for i in range(count)])
    assert refused.value.errors[0]["field"] == "records"
    assert Record.objects.count() == 0
    assert AuditEvent.objects.filter(action="record.submit", outcome="denied").count() == 1


def test_records_submit_takes_a_full_batch(bank_a):
    results = records.records_submit(
        caller=_caller(bank_a), raw_records=[record(f"L-{i}") for i in range(records.MAX_BATCH)]
    )
    assert len(results) == records.MAX_BATCH == Record.objects.count()


@pytest.mark.parametrize("reason", ["", "   ", "x" * (records.MAX_WITHDRAW_REASON + 1)])
def test_record_withdraw_refuses_a_blank_or_long_reason(bank_a, reason):
    (stored,) = records.records_submit(caller=_caller(bank_a), raw_records=[record("L-1")])
    with pytest.raises(Invalid) as refused:
        records.record_withdraw(caller=_caller(bank_a), record_id=stored["id"], reason=reason)
    assert refused.value.errors[0]["field"] == "reason"
    assert Record.objects.get(pk=stored["id"]).withdrawn_at is None


def test_record_withdraw_keeps_a_reason_at_the_limit(bank_a):
    (stored,) = records.records_submit(caller=_caller(bank_a), raw_records=[record("L-1")])
    reason = "y" * records.MAX_WITHDRAW_REASON
    withdrawn = records.record_withdraw(caller=_caller(bank_a), record_id=stored["id"], reason=f"  {reason}  ")
    assert withdrawn.withdrawn_at is not None
    assert Record.objects.get(pk=stored["id"]).withdraw_reason == reason
