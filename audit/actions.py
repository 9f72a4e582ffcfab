"""The audit log's vocabulary: every action an event may name, in one enum.

Values are the strings stored in `AuditEvent.action` (and hashed into the chain), so a value never
changes once events carry it; add new members instead.
"""

from django.db import models


class Action(models.TextChoices):
    # member API and bulk files
    API_ACCESS = "api.access", "API access refused"
    AUTHENTICATE = "auth.authenticate", "API authentication"
    RECORD_SUBMIT = "record.submit", "records submitted"
    RECORD_LIST = "record.list", "records listed"
    RECORD_READ = "record.read", "record read"
    RECORD_HISTORY = "record.history", "record history read"
    RECORD_WITHDRAW = "record.withdraw", "record withdrawn"
    SUBMISSION_CREATE = "submission.create", "bulk file submitted"
    SUBMISSION_LIST = "submission.list", "bulk files listed"
    SUBMISSION_READ = "submission.read", "bulk file read"
    SUBMISSION_ERRORS = "submission.errors", "bulk file errors read"
    SUBMISSION_COMPLETE = "submission.complete", "bulk file completed"
    SUBMISSION_FAIL = "submission.fail", "bulk file failed"
    CONSENT_REGISTER = "consent.register", "consent registered"
    CONSENT_LIST = "consent.list", "consents listed"
    CONSENT_READ = "consent.read", "consent read"
    CONSENT_REVOKE = "consent.revoke", "consent revoked"
    INQUIRY_CREATE = "inquiry.create", "inquiry made"
    INQUIRY_LIST = "inquiry.list", "inquiries listed"
    INQUIRY_READ = "inquiry.read", "inquiry read"
    DISPUTE_OPEN = "dispute.open", "dispute opened"
    DISPUTE_LIST = "dispute.list", "disputes listed"
    DISPUTE_READ = "dispute.read", "dispute read"
    DISPUTE_RESOLVE = "dispute.resolve", "dispute resolved"
    RECORD_SUBMIT_REPLAY = "record.submit.replay", "records submission replayed (Idempotency-Key)"
    CONSENT_REGISTER_REPLAY = "consent.register.replay", "consent registration replayed (Idempotency-Key)"
    INQUIRY_CREATE_REPLAY = "inquiry.create.replay", "inquiry replayed (Idempotency-Key)"
    EVIDENCE_LIST = "evidence_request.list", "evidence requests listed"
    EVIDENCE_READ = "evidence_request.read", "evidence request read"
    EVIDENCE_ANSWER = "evidence_request.answer", "evidence request answered"
    OPRF_EVALUATE = "oprf.evaluate", "blind subjects evaluated"
    # No longer written (a flood minute is now one event of the refused action, with its count):
    # kept to name the events of older logs.
    LIMIT_FLOOD = "limit.flood", "refusals of one minute, counted"
    # members and keys
    MEMBER_CREATE = "member.create", "member created"
    MEMBER_UPDATE = "member.update", "member updated"
    MEMBER_SET_STATUS = "member.set_status", "member status set"
    API_KEY_ISSUE = "api_key.issue", "API key issued"
    API_KEY_REVOKE = "api_key.revoke", "API key revoked"
    MEMBER_SET_KEY_RECIPIENT = "member.set_key_recipient", "member key recipient set"
    MEMBER_SET_LIMITS = "member.set_limits", "member limits set"
    # staff in the console
    STAFF_LOGIN_FAILED = "staff.login_failed", "staff login failed"
    STAFF_LOCKED_OUT = "staff.locked_out", "staff account locked out"
    ADMIN_REVEAL = "admin.reveal", "personal field revealed"
    DASHBOARD_VIEW = "dashboard.view", "dashboard viewed"
    BORROWER_REPORT_VIEW = "borrower_report.view", "borrower report viewed"
    AUDIT_BROWSE = "audit.browse", "audit log browsed"
    STAFF_LOGIN = "staff.login", "staff logged in"
    CONSOLE_LIST = "console.list", "console list viewed"
    CONSOLE_VIEW = "console.view", "console page viewed"
    # operations
    AUDIT_EXPORT = "audit.export", "audit log exported"
    AUDIT_VERIFY = "audit.verify", "audit chain verified"
    KEYS_ROTATE = "keys.rotate", "field keys rotated"
    RETENTION_PURGE = "retention.purge", "expired data purged"
    # consent assurance and compliance alerts
    EVIDENCE_OPEN = "evidence_request.open", "evidence request opened"
    EVIDENCE_OVERDUE = "evidence_request.overdue", "evidence request overdue"
    ALERTS_EVALUATE = "compliance_alert.evaluate", "compliance alert rules evaluated"
    ALERT_RAISE = "compliance_alert.raise", "compliance alert raised"
    ALERT_VIEW = "compliance_alert.view", "compliance alerts viewed"
    ALERT_CLOSE = "compliance_alert.close", "compliance alert closed"
    COMPLIANCE_VIEW = "compliance.view", "compliance page viewed"
