"""The examples of docs/integration.md are run against the API, in order, and must match.

Each example is an HTML comment `<!-- example NAME -->` followed by an ```http block (request
line, headers, blank line, body) and a ```json block headed by `Response STATUS` (the body
answered), optionally followed by `<!-- save var=json.path -->` so that a later request can say
`{var}`. Ids, times, hashes and key prefixes differ between runs and are compared by their form.

`DOCS_RENDER=1 pytest tests/docs` rewrites the response blocks from a real run.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock

import pytest

from members.services import member_create

DOC = Path(__file__).resolve().parents[2] / "docs" / "integration.md"
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # the doc's examples are dated before this day

EXAMPLE = re.compile(
    r"<!-- example (?P<name>[\w-]+) -->\s*```http\n(?P<request>.*?)\n```\s*"
    r"Response `(?P<status>\d{3})`[^\n]*:\s*```(?:json|jsonl|text)\n(?P<response>.*?)\n```"
    r"(?:\s*<!-- save (?P<save>[^>]*?) -->)?",
    re.S,
)
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
VOLATILE = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})"), "<datetime>"),
    (re.compile(r"\bcx_[0-9a-f]{12}\b"), "<prefix>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (re.compile(r"cursor=[\w%=-]+"), "cursor=<cursor>"),
    (re.compile(r'"size": \d+'), '"size": <n>'),
]


def parse_request(text: str) -> tuple[str, str, dict[str, str], str]:
    head, _, body = text.partition("\n\n")
    lines = head.splitlines()
    method, path = lines[0].split(" ", 1)
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return method, path, headers, body


def normalise(text: str) -> str:
    text = UUID.sub("<uuid>", text)
    for pattern, placeholder in VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def pretty(response) -> str:
    if response["Content-Type"].startswith("application/x-ndjson"):
        body = b"".join(response.streaming_content) if response.streaming else response.content
        return body.decode().strip()
    return json.dumps(response.json(), indent=2, ensure_ascii=False)


def dig(data, path: str):
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


@pytest.mark.django_db
def test_every_example_of_the_integration_guide_runs_as_documented(settings, django_capture_on_commit_callbacks):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    settings.EXCHANGE_SUBMISSIONS_DIR = Path(settings.BASE_DIR) / "var" / "test-doc-submissions"
    from rest_framework.test import APIClient

    keys = {
        # The demo's members (seed_demo), so that each example also runs against `scripts/run.sh`.
        "$KEY_A": member_create(code="DEMO_BANK_A", name="Demo Bank A", kind="bank", actor="docs")[2],
        "$KEY_B": member_create(code="DEMO_LENDER_B", name="Demo Online Lender B", kind="fintech", actor="docs")[2],
    }
    doc = DOC.read_text()
    examples = list(EXAMPLE.finditer(doc))
    assert len(examples) >= 15, "the guide lost its examples"
    saved: dict[str, str] = {}
    rendered = doc
    mismatches = []
    with mock.patch("django.utils.timezone.now", return_value=NOW):
        for example in examples:
            method, path, headers, body = parse_request(example["request"])
            for var, value in saved.items():
                path, body = path.replace("{" + var + "}", value), body.replace("{" + var + "}", value)
            client = APIClient()
            extra = {}
            for name, value in headers.items():
                for var, key in keys.items():
                    value = value.replace(var, key)
                if name == "Content-Type":
                    continue
                extra["HTTP_" + name.upper().replace("-", "_")] = value
            content_type = headers.get("Content-Type", "application/json")
            with django_capture_on_commit_callbacks(execute=True):
                response = getattr(client, method.lower())(
                    path, data=body.encode() if body else None, content_type=content_type, **extra
                )
            actual = pretty(response)
            for assignment in (example["save"] or "").split(","):
                if assignment.strip():
                    var, _, json_path = assignment.strip().partition("=")
                    saved[var] = str(dig(response.json(), json_path))
            if os.environ.get("DOCS_RENDER"):
                rendered = rendered.replace(
                    example.group(0),
                    example.group(0)
                    .replace(f"Response `{example['status']}`", f"Response `{response.status_code}`")
                    .replace(example["response"], actual),
                )
                continue
            if str(response.status_code) != example["status"]:
                mismatches.append(f"{example['name']}: status {response.status_code}, doc says {example['status']}")
            elif normalise(actual) != normalise(example["response"]):
                mismatches.append(f"{example['name']}:\n--- doc\n{example['response']}\n--- actual\n{actual}")
    if os.environ.get("DOCS_RENDER"):
        DOC.write_text(rendered)
        pytest.skip("rendered docs/integration.md from a real run")
    assert not mismatches, "\n\n".join(mismatches)
