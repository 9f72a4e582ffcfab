"""Demo data for a first run: members with printed keys, a few hundred borrowers, records at
several members, consents and past inquiries, and an admin login. Safe to run again."""

from __future__ import annotations

import json
import random
import secrets
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from audit.actors import cli_actor
from exchange import consents, inquiries, records, services
from exchange.models import Channel, Consent, Purpose
from exchange.validation import parse_record
from members.models import Member, MemberKind, Scope
from members.roles import AUDITOR, COMPLIANCE, OPERATOR
from members.services import api_key_issue, member_create

MEMBERS = [
    ("DEMO_BANK_A", "Demo Bank A", MemberKind.BANK),
    ("DEMO_LENDER_B", "Demo Online Lender B", MemberKind.FINTECH),
    ("DEMO_CF_C", "Demo Consumer Finance C", MemberKind.CONSUMER_FINANCE),
    ("DEMO_MICRO_D", "Demo Microlender D", MemberKind.MICROLENDER),
    ("DEMO_BANK_E", "Demo Bank E", MemberKind.BANK),
]
# One staff login per console role (members/roles.py): user name, role group.
STAFF = [("operator", OPERATOR), ("compliance", COMPLIANCE), ("auditor", AUDITOR)]
KEYED = MEMBERS[:2]  # the members whose keys are printed for the tour
BORROWERS = 300
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun"]
GIVEN = ["Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Jun", "Hui", "Qiang", "Na", "Tao", "Xin"]
REGIONS = ["110105", "310104", "440305", "510107", "330106", "420111"]
_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def demo_resident_id(rng: random.Random) -> str:
    born = date(1960, 1, 1) + timedelta(days=rng.randrange(365 * 42))
    body = f"{rng.choice(REGIONS)}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, _WEIGHTS, strict=True)) % 11]


def demo_record(rng: random.Random, ref: str, id_number: str, name: str, today: date) -> dict:
    status = rng.choices(["delinquent", "restructured", "settled", "written_off"], [55, 15, 20, 10])[0]
    opened = today - timedelta(days=rng.randrange(200, 1500))
    since = opened + timedelta(days=rng.randrange(30, max(31, (today - opened).days - 20)))
    as_of = min(today, since + timedelta(days=rng.randrange(10, 400)))
    principal = rng.randrange(2_000, 300_000)
    open_ = status in ("delinquent", "restructured")
    dpd = (as_of - since).days if open_ else rng.choice([0, 0, 30, 90])
    months = min(24, max(1, (as_of - opened).days // 30))
    history = "".join(rng.choices("NNNNN1234567", k=months))
    record = {
        "member_reference": ref,
        "subject": {"id_type": "CN_RIC", "id_number": id_number, "name": name},
        "product": rng.choice(["consumer_loan", "credit_line", "credit_card", "bnpl", "auto_loan"]),
        "currency": "CNY",
        "principal": f"{principal}.00",
        "amount_overdue": f"{rng.randrange(100, principal // 2) if open_ else 0}.{rng.randrange(100):02d}",
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


class Command(BaseCommand):
    help = "Create demo members (keys printed), borrowers, records, consents, inquiries and an admin login."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=2026)

    def handle(self, *args, seed: int, **options):
        actor = cli_actor("seed_demo")
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
        self._admin(fresh)
        self._staff()
        tour = ids[0]
        self.stdout.write("")
        self.stdout.write("Demo data ready." if fresh else "Demo data already present; fresh demo keys issued.")
        self.stdout.write("Demo API keys (shown once; both scopes):")
        for code, key in keys.items():
            self.stdout.write(f"  {code}: {key}")
        self.stdout.write("A borrower with records at several members (DEMO_BANK_A registered a consent for it):")
        self.stdout.write("  " + json.dumps({"id_type": "CN_RIC", "id_number": tour}))
        consent = Consent.objects.filter(member__code="DEMO_BANK_A").order_by("created_at").first()
        if consent:
            self.stdout.write(f"  consent_id: {consent.pk} (purpose {consent.purpose})")

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
        if len(plan[0]) < 3:
            plan[0] = [0, 1, 2]
        for m, member in enumerate(members):
            raw = [
                demo_record(rng, f"{member.code[-6:]}-{index:05d}", ids[index], names[index], today)
                for index, holders in plan.items()
                if m in holders
            ]
            with transaction.atomic():
                records.records_store(member=member, actor=actor, records=[parse_record(r) for r in raw])
        now = timezone.now()
        callers = {m.code: services.Caller(member=m, actor=actor) for m in members}
        for index in range(60):
            for member in (members[0], members[1], rng.choice(members[2:])):
                consent = consents.consent_register(
                    caller=callers[member.code],
                    subject={"id_type": "CN_RIC", "id_number": ids[index]},
                    purpose=Purpose.CREDIT_APPLICATION,
                    channel=rng.choice(Channel.values),
                    granted_at=now - timedelta(days=rng.randrange(1, 30)),
                    expires_at=now + timedelta(days=rng.randrange(30, 300)),
                    evidence_sha256=secrets.token_hex(32),
                )
                # Past inquiries by other members: the multi-lending signal of the tour borrower.
                if member != members[0] and (index < 20 or rng.random() < 0.3):
                    inquiries.inquiry_create(
                        caller=callers[member.code],
                        subject={"id_type": "CN_RIC", "id_number": ids[index]},
                        consent_id=consent.pk,
                        purpose=Purpose.CREDIT_APPLICATION,
                    )

    def _admin(self, fresh: bool) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(username="admin").exists():
            self.stdout.write(
                "Admin console: http://127.0.0.1:8000/admin/ user 'admin' (password printed at first run)"
            )
            return
        password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser("admin", "admin@example.invalid", password)
        self.stdout.write(
            f"Admin console: http://127.0.0.1:8000/admin/ user 'admin' password '{password}' (shown once)"
        )

    def _staff(self) -> None:
        """A staff login per role, for trying the console as each; passwords are shown once."""
        from django.contrib.auth.models import Group

        user_model = get_user_model()
        for username, role in STAFF:
            if user_model.objects.filter(username=username).exists():
                self.stdout.write(f"  role {role!r}: user '{username}' (password printed at first run)")
                continue
            password = secrets.token_urlsafe(12)
            user = user_model.objects.create_user(username, f"{username}@example.invalid", password, is_staff=True)
            user.groups.add(Group.objects.get(name=role))
            self.stdout.write(f"  role {role!r}: user '{username}' password '{password}' (shown once)")
