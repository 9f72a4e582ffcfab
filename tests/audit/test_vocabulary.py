"""One audit vocabulary: every action the product writes is an `audit.actions.Action`, and every
actor string is built by `audit.actors`. Checked on the source, so a new call site cannot drift."""

import ast
from pathlib import Path

import pytest

from audit.actions import Action

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [
    p
    for app in ("audit", "core", "exchange", "members")
    for p in (ROOT / app).rglob("*.py")
    if "migrations" not in p.parts
]
# callable name -> position of its action argument when passed positionally
AUDITING = {"audit_write": None, "audit_denied": 1, "audit_read": 1, "audit_refusal": 1, "deny": 1, "ConsoleAction": 1}
ACTOR_PREFIXES = ("staff:", "member:", "cli:", "key:", "client:")


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in AUDITING:
                yield name, node


def _action_argument(name: str, call: ast.Call) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == "action":
            return keyword.value
    position = AUDITING[name]
    return call.args[position] if position is not None and len(call.args) > position else None


def test_the_product_names_actions_only_through_the_enum():
    literal = []
    for path in PRODUCT:
        for name, call in _calls(ast.parse(path.read_text(), str(path))):
            argument = _action_argument(name, call)
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                literal.append(f"{path.relative_to(ROOT)}:{call.lineno} {name}({argument.value!r})")
    assert literal == []


def test_actor_strings_are_built_only_by_audit_actors():
    built_elsewhere = []
    for path in PRODUCT:
        if path == ROOT / "audit" / "actors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            parts = node.values if isinstance(node, ast.JoinedStr) else [node]
            first = parts[0] if parts else None
            if (
                isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and first.value.startswith(ACTOR_PREFIXES)
            ):
                if isinstance(node, ast.JoinedStr):
                    built_elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert built_elsewhere == []


@pytest.mark.parametrize("action", list(Action))
def test_every_action_is_a_dotted_lower_case_name(action):
    domain, _, verb = action.value.partition(".")
    assert domain and verb and action.value == action.value.lower() and " " not in action.value
