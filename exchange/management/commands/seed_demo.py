"""Demo data for a first run: a living exchange. Members (one suspended) with printed keys, a few
hundred borrowers, records furnished over 24 months (some updated since), consents and inquiries
over 90 days, open, overdue and resolved disputes, a member fishing (its compliance alerts raised),
evidence requests in every state, and a console login per role. Safe to run again.

Everything is made through the services, so the audit log holds one event per change, at the time
the seed ran; afterwards the demo rows' own dates (`created_at`, `opened_at`, ...) are moved back
so that the dashboard shows a history rather than one day. The keys, the tour's borrower and its
consent also go to a git-ignored `var/demo.env` that the README's tour sources.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import secrets
import shlex
import sys
import uuid
from datetime import date, datetime, time, timedelta
from pathlib import Path

from cx_client.subjects import oprf_input
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from audit.actors import cli_actor, staff_actor
from core import oprf
from core.problems import ApiError
from exchange import consents, records, services
from exchange.alerts import alerts_evaluate
from exchange.disputes import Roles, dispute_open, dispute_open_by_staff, dispute_resolve
from exchange.evidence import evidence_answer, evidence_mark_overdue, evidence_requests_open
from exchange.inquiries import inquiry_create
from exchange.models import (
    Channel,
    Consent,
    Dispute,
    DisputeOutcome,
    EvidenceRequest,
    Inquiry,
    Purpose,
    Record,
    RecordVersion,
)
from exchange.validation import parse_record, raw_subjects_refused
from members.models import Member, MemberKind, MemberStatus, Scope
from members.roles import AUDITOR, COMPLIANCE, OPERATOR
from members.services import api_key_issue, member_create, member_set_status

MEMBERS = [
    ("DEMO_BANK_A", "Demo Bank A", MemberKind.BANK),
    ("DEMO_LENDER_B", "Demo Online Lender B", MemberKind.FINTECH),
    ("DEMO_CF_C", "Demo Consumer Finance C", MemberKind.CONSUMER_FINANCE),
    ("DEMO_MICRO_D", "Demo Microlender D", MemberKind.MICROLENDER),
    ("DEMO_BANK_E", "Demo Bank E", MemberKind.BANK),
    ("DEMO_FIN_F", "Demo Fintech F", MemberKind.FINTECH),
]
SUSPENDED = "DEMO_FIN_F"  # furnished for a while, then suspended by the exchange
FISHER = "DEMO_MICRO_D"  # queries far more borrowers than it has consents for: compliance alerts
FISHING_SUBJECTS = 210  # distinct borrowers it queries within the hour the seed runs (floor: 200)
# One staff login per console role (members/roles.py): user name, role group; plus `admin`.
STAFF = [("operator", OPERATOR), ("compliance", COMPLIANCE), ("auditor", AUDITOR)]
KEYED = MEMBERS[:2]  # the members whose keys are printed for the tour
BORROWERS = 300
HISTORY_DAYS = 730  # records furnished over 24 months
INQUIRY_DAYS = 90
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun"]
GIVEN = ["Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Jun", "Hui", "Qiang", "Na", "Tao", "Xin"]
REGIONS = ["110105", "310104", "440305", "510107", "330106", "420111"]
REASONS = [
    "The borrower says this loan was repaid in full.",
    "The borrower says the amount overdue is wrong.",
    "The borrower does not recognise this loan.",
    "The borrower says the payment plan was agreed and kept.",
]
_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def demo_resident_id(rng: random.Random) -> str:
    born = date(1960, 1, 1) + timedelta(days=rng.randrange(365 * 42))
    body = f"{rng.choice(REGIONS)}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True)) % 11]


def demo_document(member_code: str, index) -> bytes:
    """The demo's stand-in for a borrower's signed authorisation (its SHA-256 is the consent's evidence)."""
    return f"Demo signed authorisation: borrower {index} authorises {member_code} to query the exchange.".encode()


def days_ago(rng: random.Random, span: int) -> int:
    """A day within `span` days back, more often recent ones (an exchange that is growing)."""
    return int(span * rng.random() ** 1.6)


def demo_subject(id_number: str, *, name: str | None = None) -> dict:
    """A demo borrower as members send it: raw, or blind on an exchange that takes blind subjects
    only (EXCHANGE_RAW_SUBJECTS=refuse): the exchange's own evaluation is the output a member gets."""
    subject = {"id_type": "CN_RIC", "id_number": id_number}
    if raw_subjects_refused():
        output = oprf.evaluate_input(oprf_input("CN_RIC", id_number))
        subject = {"id_type": "CN_RIC", "blind": base64.b64encode(output).decode("ascii")}
    return {**subject, "name": name} if name else subject


def demo_record(rng: random.Random, ref: str, id_number: str, name: str, as_of: date, status: str = "") -> dict:
    """One record as a member would submit it on `as_of`."""
    status = status or rng.choices(["delinquent", "restructured", "settled", "written_off"], [55, 15, 20, 10])[0]
    since = as_of - timedelta(days=rng.randrange(10, 400))
    opened = since - timedelta(days=rng.randrange(30, 1100))
    principal = rng.randrange(2_000, 300_000)
    open_ = status in ("delinquent", "restructured")
    dpd = (as_of - since).days if open_ else rng.choice([0, 0, 30, 90])
    months = min(24, max(1, (as_of - opened).days // 30))
    history = "".join(rng.choices("NNNNN1234567", k=months))
    record = {
        "member_reference": ref,
        "subject": demo_subject(id_number, name=name),
        "product": rng.choice(["consumer_loan", "credit_line", "credit_card", "bnpl", "auto_loan"]),
        "currency": "CNY",
        "principal": f"{principal}.00",
        "amount_overdue": f"{rng.randrange(100, principal // 2)}.{rng.randrange(100):02d}" if open_ else "0.00",
        "days_past_due": dpd,
        "status": status,
        "opened_on": opened.isoformat(),
        "delinquent_since": since.isoformat(),
        "as_of": as_of.isoformat(),
        "notice_sent_on": (since + timedelta(days=rng.randrange(0, max(1, (as_of - since).days)))).isoformat(),
        "payment_history": history,
    }
    if not open_:
        record["settled_on"] = as_of.isoformat()
        record["payment_history"] = history[:-1] + ("C" if status == "settled" else "B")
    return record


def at(day: date, rng: random.Random) -> datetime:
    """A working-hours moment of `day`, aware."""
    moment = datetime.combine(day, time(1 + rng.randrange(10), rng.randrange(60)))
    return timezone.make_aware(moment, timezone.get_current_timezone())


class Command(BaseCommand):
    help = (
        "Create a living demo exchange: members (keys printed and written to var/demo.env), borrowers, "
        "records over 24 months, consents, inquiries, disputes and console logins. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=2026, help="random seed of the demo data")
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="where the server answers (for the printed links)"
        )
        parser.add_argument(
            "--env-file",
            default=None,
            help="where to write the tour's variables (default var/demo.env in the project folder)",
        )
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="give the console logins (admin and one per role) new passwords and print them",
        )

    def handle(self, *args, seed: int, base_url: str, env_file: str | None, reset_passwords: bool, **options):
        actor = cli_actor("seed_demo")
        base_url = base_url.rstrip("/")
        rng = random.Random(seed)
        today = timezone.localdate()
        fresh = not Member.objects.filter(code=MEMBERS[0][0]).exists()
        ids = [demo_resident_id(rng) for _ in range(BORROWERS)]
        names = [f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}" for _ in range(BORROWERS)]
        if fresh:
            self._seed(rng, actor, ids, names, today)
        keys = {}
        for code, _name, _kind in KEYED:
            member = Member.objects.get(code=code)
            _key, full = api_key_issue(member=member, scopes=[Scope.SUBMIT, Scope.QUERY], actor=actor)
            keys[code] = full
        self.stdout.write(f"Admin console: {base_url}/admin/")
        self._logins(reset_passwords)
        borrower = demo_subject(ids[0])
        _id_type, token = services.parse_subject_or_invalid(borrower)
        consent = (
            Consent.objects.filter(member__code="DEMO_BANK_A", subject_token=token, revoked_at__isnull=True)
            .filter(expires_at__gt=timezone.now())
            .order_by("-expires_at")
            .first()
        )
        if not fresh and not Record.objects.filter(subject_token=token).exists():
            # Tokens made under another scheme or key (token version 1, or a changed EXCHANGE_SUBJECT_KEY
            # or EXCHANGE_OPRF_KEY) never match again: the tour's borrower would have no records.
            self.stderr.write(
                "The demo data in this database was made under another subject token scheme or key "
                "(docs/privacy.md, 'Token versions'): its borrowers no longer match. In development, "
                "delete db.sqlite3 and run again to re-create it."
            )
        self.stdout.write("")
        self.stdout.write("Demo data ready." if fresh else "Demo data already present; fresh demo keys issued.")
        self.stdout.write("Demo API keys (shown once; both scopes):")
        for code, key in keys.items():
            self.stdout.write(f"  {code}: {key}")
        self.stdout.write("A borrower with records at several members (DEMO_BANK_A registered a consent for it):")
        self.stdout.write("  " + json.dumps(borrower))
        if consent:
            self.stdout.write(f"  consent_id: {consent.pk} (purpose {consent.purpose})")
        path = Path(env_file) if env_file else Path(settings.BASE_DIR) / "var" / "demo.env"
        self._write_env(path, base_url, keys, borrower, consent)
        shown = path.relative_to(settings.BASE_DIR) if path.is_relative_to(settings.BASE_DIR) else path
        self.stdout.write(f"The same, for the README's tour: source {shown}")

    # --- the data ------------------------------------------------------------------------

    def _seed(self, rng: random.Random, actor: str, ids: list[str], names: list[str], today: date) -> None:
        members = []
        for code, name, kind in MEMBERS:
            member, _key, _full = member_create(code=code, name=name, kind=kind, actor=actor)
            members.append(member)
        # The first borrowers have records at three or four members: the multi-lending picture.
        plan: dict[int, list[int]] = {}
        for index in range(len(ids)):
            count = rng.choice([3, 4]) if index < 40 else rng.choices([0, 1, 2], [30, 55, 15])[0]
            plan[index] = rng.sample(range(len(members)), count)
        if len(plan[0]) < 3 or members.index(self._member(members, SUSPENDED)) in plan[0][:3]:
            plan[0] = [0, 1, 2]
        # When each record was furnished, and for some a later update (the loan settled, or got worse).
        furnished: dict[tuple[int, int], list[date]] = {}
        for m, member in enumerate(members):
            batches: list[list[dict]] = [[], []]
            # The suspended member stopped furnishing months ago.
            newest = 150 if member.code == SUSPENDED else 0
            for index, holders in plan.items():
                if m not in holders:
                    continue
                ref = f"{member.code[-6:]}-{index:05d}"
                first = today - timedelta(days=newest + days_ago(rng, HISTORY_DAYS - newest))
                dates = [first]
                # The tour's borrower owes money at each of its lenders: the picture the tour shows.
                tour = index == 0
                batches[0].append(demo_record(rng, ref, ids[index], names[index], first, "delinquent" if tour else ""))
                if not tour and rng.random() < 0.35 and (today - first).days > 40 and member.code != SUSPENDED:
                    later = first + timedelta(days=rng.randrange(20, (today - first).days))
                    update = demo_record(
                        rng, ref, ids[index], names[index], later, rng.choice(["settled", "delinquent"])
                    )
                    batches[1].append(update)
                    dates.append(later)
                furnished[(m, index)] = dates
            for batch in batches:
                with transaction.atomic():
                    records.records_store(member=member, actor=actor, records=[parse_record(r) for r in batch])
        with transaction.atomic():
            self._backdate_records(members, plan, furnished, rng)

        now = timezone.now()
        callers = {m.code: services.Caller(member=m, actor=actor) for m in members}
        active = [m for m in members if m.code != SUSPENDED]
        inquiries: list[tuple[Inquiry, int, int]] = []
        for index in range(160):
            askers = (active[0], active[1], rng.choice(active[2:])) if index < 60 else (rng.choice(active),)
            for member in askers:
                # The first borrowers were asked about lately: the tour's multi-lending signal.
                asked = rng.randrange(0, 21) if index < 5 else days_ago(rng, INQUIRY_DAYS)
                granted = now - timedelta(days=asked + rng.randrange(0, 5), hours=rng.randrange(1, 12))
                consent = consents.consent_register(
                    caller=callers[member.code],
                    subject=demo_subject(ids[index]),
                    purpose=Purpose.CREDIT_APPLICATION,
                    channel=rng.choice(Channel.values),
                    granted_at=granted,
                    expires_at=granted + timedelta(days=rng.randrange(180, 365)),
                    evidence_sha256=hashlib.sha256(demo_document(member.code, index)).hexdigest(),
                )
                Consent.objects.filter(pk=consent.pk).update(created_at=granted)
                # Past inquiries by other members: the multi-lending signal of the tour borrower.
                if member != members[0] and (index < 20 or rng.random() < 0.6):
                    inquiry = inquiry_create(
                        caller=callers[member.code],
                        subject=demo_subject(ids[index]),
                        consent_id=consent.pk,
                        purpose=Purpose.CREDIT_APPLICATION,
                    )
                    inquiries.append((inquiry, asked, index))
        with transaction.atomic():
            for inquiry, asked, _index in inquiries:
                when = now - timedelta(days=asked, hours=rng.randrange(0, 10), minutes=rng.randrange(60))
                Inquiry.objects.filter(pk=inquiry.pk).update(created_at=max(when, inquiry.consent.granted_at))
        self._disputes(rng, actor, inquiries, now)
        self._fishing(rng, callers[FISHER], ids)
        self._evidence(rng, actor, callers, inquiries, now)
        alerts_evaluate(actor=actor, since=now - timedelta(days=INQUIRY_DAYS), notify=False)
        member_set_status(member=self._member(members, SUSPENDED), status=MemberStatus.SUSPENDED, actor=actor)

    @staticmethod
    def _fishing(rng: random.Random, fisher: services.Caller, ids: list[str]) -> None:
        """The fisher, within this hour: a consent and an inquiry for each of FISHING_SUBJECTS
        borrowers (inquiry_volume), inquiries with no consent at all (consent_denials), and one
        signed authorisation registered for several borrowers (evidence_reuse)."""
        now = timezone.now()
        for index in rng.sample(range(len(ids)), FISHING_SUBJECTS):
            borrower = demo_subject(ids[index])
            consent = consents.consent_register(
                caller=fisher,
                subject=borrower,
                purpose=Purpose.CREDIT_LINE_REVIEW,
                channel=Channel.WEB,
                granted_at=now - timedelta(minutes=5),
                expires_at=now + timedelta(days=30),
                evidence_sha256=hashlib.sha256(demo_document(fisher.member.code, f"fishing-{index}")).hexdigest(),
            )
            inquiry_create(caller=fisher, subject=borrower, consent_id=consent.pk, purpose=Purpose.CREDIT_LINE_REVIEW)
        for index in range(25):
            try:
                inquiry_create(
                    caller=fisher,
                    subject=demo_subject(ids[index]),
                    consent_id=uuid.uuid4(),
                    purpose=Purpose.CREDIT_APPLICATION,
                )
            except ApiError:
                pass  # consent_required, audited: what the rule counts
        reused = hashlib.sha256(demo_document(fisher.member.code, "one signature for all")).hexdigest()
        for index in range(3):
            try:
                consents.consent_register(
                    caller=fisher,
                    subject=demo_subject(ids[-1 - index]),
                    purpose=Purpose.CREDIT_APPLICATION,
                    channel=Channel.PAPER,
                    granted_at=now - timedelta(days=1),
                    expires_at=now + timedelta(days=60),
                    evidence_sha256=reused,
                )
            except ApiError:
                pass  # consent_evidence_reused, audited

    @staticmethod
    def _evidence(rng: random.Random, actor: str, callers: dict, inquiries: list, now) -> None:
        """Spot checks of two members' past inquiries, in every state: verified (answered with the
        document), mismatch (another document), overdue (never answered) and open."""
        plan = {"DEMO_LENDER_B": ["verified", "verified", "verified", "mismatch", "overdue", "open"]}
        plan["DEMO_CF_C"] = ["verified", "overdue", "open"]
        plan[FISHER] = ["mismatch", "overdue", "open"]
        for code, states in plan.items():
            caller = callers[code]
            past = [inquiry for inquiry, _asked, _index in inquiries if inquiry.member_id == caller.member.pk]
            chosen = rng.sample(past, min(len(states), len(past)))
            opened = evidence_requests_open(
                member=caller.member, actor=staff_actor("compliance"), inquiry_ids=[i.pk for i in chosen]
            )
            for request, state, inquiry in zip(opened, states, chosen, strict=False):
                age = rng.randrange(12, 30) if state == "overdue" else rng.randrange(1, 8)
                opened_at = now - timedelta(days=age, hours=rng.randrange(8))
                EvidenceRequest.objects.filter(pk=request.pk).update(
                    opened_at=opened_at, due_at=opened_at + timedelta(days=settings.EXCHANGE_EVIDENCE_DAYS)
                )
                if state in ("verified", "mismatch"):
                    index = next(i for inq, _a, i in inquiries if inq.pk == inquiry.pk)
                    document = demo_document(code, index) if state == "verified" else b"an unsigned page"
                    evidence_answer(
                        caller=caller, request_id=request.pk, read=io.BytesIO(document).read, declared_size=None
                    )
        evidence_mark_overdue(actor=actor)

    @staticmethod
    def _member(members: list[Member], code: str) -> Member:
        return next(m for m in members if m.code == code)

    @staticmethod
    def _backdate_records(members, plan, furnished, rng) -> None:
        for m, member in enumerate(members):
            for index, holders in plan.items():
                if m not in holders:
                    continue
                dates = furnished[(m, index)]
                record = Record.objects.get(
                    member=member, reference_index=records.reference_index(member, f"{member.code[-6:]}-{index:05d}")
                )
                moments = [at(day, rng) for day in dates]
                for version, moment in enumerate(moments, start=1):
                    RecordVersion.objects.filter(record=record, version=version).update(created_at=moment)
                Record.objects.filter(pk=record.pk).update(created_at=moments[0], updated_at=moments[-1])

    def _disputes(self, rng: random.Random, actor: str, inquiries: list[tuple[Inquiry, int, int]], now) -> None:
        """Disputes on lines of past inquiries, open, overdue and resolved; never on the first 40
        borrowers' records (the tour's borrower and its multi-lending peers stay undisputed)."""
        candidates = [
            (inquiry, line)
            for inquiry, _asked, index in inquiries
            if index >= 40
            for line in range(len(inquiry.line_records or []))
        ]
        rng.shuffle(candidates)
        used: set[str] = set()
        plan = ["open"] * 6 + ["overdue"] * 3 + ["upheld"] * 5 + ["deleted"] * 2
        for kind, (inquiry, line) in zip(plan, candidates, strict=False):
            record_id = str(inquiry.line_records[line])
            if record_id in used:
                continue
            used.add(record_id)
            caller = services.Caller(member=inquiry.member, actor=actor)
            if kind == "overdue" and rng.random() < 0.5:
                record = Record.objects.get(pk=record_id)
                dispute = dispute_open_by_staff(record=record, reason=rng.choice(REASONS), actor="staff:operator")
            else:
                dispute = dispute_open(caller=caller, inquiry_id=inquiry.pk, line=line, reason=rng.choice(REASONS))
            age = {"open": rng.randrange(1, 14), "overdue": settings.EXCHANGE_DISPUTE_DAYS + rng.randrange(2, 12)}.get(
                kind, rng.randrange(25, 80)
            )
            opened = now - timedelta(days=age, hours=rng.randrange(10))
            changes = {"opened_at": opened, "due_at": opened + timedelta(days=settings.EXCHANGE_DISPUTE_DAYS)}
            if kind in ("upheld", "deleted"):
                furnisher = Record.objects.select_related("member").get(pk=record_id).member
                dispute_resolve(
                    caller=services.Caller(member=furnisher, actor=actor),
                    roles=Roles(furnisher=True, filer=False),
                    dispute_id=dispute.pk,
                    outcome=DisputeOutcome(kind),
                    note="Checked against the loan ledger.",
                )
                changes["resolved_at"] = opened + timedelta(days=rng.randrange(2, 18))
            Dispute.objects.filter(pk=dispute.pk).update(**changes)

    # --- console logins and the tour's file ------------------------------------------------

    def _logins(self, reset: bool) -> None:
        """`admin` and one staff login per role; a password is printed only when it is set."""
        from django.contrib.auth.models import Group

        user_model = get_user_model()
        for username, role in [("admin", None), *STAFF]:
            label = "superuser" if role is None else f"role {role!r}"
            user = user_model.objects.filter(username=username).first()
            if user is not None and not reset:
                self.stdout.write(
                    f"  {label}: user '{username}' (password printed when first set; "
                    "new ones: manage.py seed_demo --reset-passwords)"
                )
                continue
            password = secrets.token_urlsafe(12)
            if user is None and role is None:
                user = user_model.objects.create_superuser(username, f"{username}@example.invalid", password)
            elif user is None:
                user = user_model.objects.create_user(username, f"{username}@example.invalid", password, is_staff=True)
                user.groups.add(Group.objects.get(name=role))
            else:
                user.set_password(password)
                user.save(update_fields=["password"])
            self.stdout.write(f"  {label}: user '{username}' password '{password}' (shown once)")

    @staticmethod
    def _write_env(path: Path, base_url: str, keys: dict, borrower: dict, consent: Consent | None) -> None:
        python = shlex.quote(sys.executable)
        lines = [
            "# Written by `manage.py seed_demo` for the README's tour: `source var/demo.env`.",
            "# Demo keys only. Each run issues new keys and rewrites this file; earlier keys keep working.",
            f"API={shlex.quote(base_url + '/api/v1')}",
            f"KEY_A={shlex.quote(keys['DEMO_BANK_A'])}",
            f"KEY_B={shlex.quote(keys['DEMO_LENDER_B'])}",
            f"BORROWER={shlex.quote(json.dumps(borrower))}",
            f"CONSENT={shlex.quote(str(consent.pk) if consent else '')}",
            "# The member client `cx` (client/README.md): the exchange, and where it pins the OPRF key.",
            f"export CX_URL={shlex.quote(base_url)} CX_PIN_FILE={shlex.quote(str(path.parent / 'cx-pin.json'))}",
            "# pick FIELD: a field of the answer the tour last saved with `tee var/answer.json`.",
            f"pick() {{ {python} -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "
            'var/answer.json "$1"; }',
        ]
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
