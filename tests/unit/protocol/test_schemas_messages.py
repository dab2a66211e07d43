"""Risk profile, feedback and retraction rules, with the path and rule each refusal names."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from protocol.schemas import Feedback, Retraction, RiskProfile, decode_body
from tests.unit.protocol.test_schemas import body, edit, rule_for

ID_A = "5f2b8c0e9d4a4e6b8a1c3d7e9f0a1b2c"
ID_B = "9a8b7c6d5e4f30211203f4e5d6c7b8a9"


def accepts(type_name: str, data: Any) -> Any:
    return decode_body(type_name, msgspec.json.encode(data))


# Risk profile -----------------------------------------------------------------------------------

R = "risk-profile"


def indicator(**fields: Any) -> dict[str, Any]:
    return {"field": "route.origin", "operator": "eq", "values": ["ECGYE"], "weight": 50, **fields}


@pytest.mark.parametrize(
    ("path", "value", "where", "rule"),
    [
        ("title", "", "title", "must not be empty"),
        ("title", "x" * 201, "title", "must be at most 200 characters long (this is 201)"),
        (
            "category",
            "weapons",
            "category",
            "must be one of drugs, environment, ipr-health-safety, revenue, security, cultural-heritage (not 'weapons')",
        ),
        (
            "modality",
            "pipeline",
            "modality",
            "must be one of sea, air, road, rail, postal (not 'pipeline')",
        ),
        (
            "risk_level",
            "severe",
            "risk_level",
            "must be one of low, medium, high, critical (not 'severe')",
        ),
        ("indicators", [], "indicators", "must not be empty"),
        (
            "indicators",
            [indicator()] * 51,
            "indicators",
            "must hold at most 50 items (this holds 51)",
        ),
        (
            "indicators.0.operator",
            "regex",
            "indicators[0].operator",
            "must be one of eq, ne, contains, prefix, in, gt, lt (not 'regex')",
        ),
        ("indicators.1.weight", 0, "indicators[1].weight", "must be at least 1 (this is 0)"),
        ("indicators.1.weight", 101, "indicators[1].weight", "must be at most 100 (this is 101)"),
        (
            "indicators.1.weight",
            0.5,
            "indicators[1].weight",
            "must be a whole number, not a decimal number",
        ),
        (
            "indicators.2.field",
            "Route.Origin",
            "indicators[2].field",
            "must be a dotted field name such as route.origin",
        ),
        ("indicators.2.values", [], "indicators[2].values", "must not be empty"),
        (
            "indicators.1.values",
            ["0803", "0804"],
            "indicators[1].values",
            "operator 'prefix' takes exactly one value",
        ),
        (
            "indicators.2.values",
            ["heavy"],
            "indicators[2].values[0]",
            "operator 'gt' takes a decimal number such as 18000 or 2.5",
        ),
        (
            "indicators.3.values",
            ["NaN"],
            "indicators[3].values[0]",
            "operator 'lt' takes a decimal number such as 18000 or 2.5",
        ),
        (
            "indicators.3.values",
            ["1e3"],
            "indicators[3].values[0]",
            "operator 'lt' takes a decimal number such as 18000 or 2.5",
        ),
        (
            "indicators.3.values",
            ["\u0663"],
            "indicators[3].values[0]",
            "operator 'lt' takes a decimal number such as 18000 or 2.5",
        ),
        (
            "indicators.3.values",
            ["Infinity"],
            "indicators[3].values[0]",
            "operator 'lt' takes a decimal number such as 18000 or 2.5",
        ),
        ("valid_from", "2024-06-01T00:00:00+01:00", "valid_from", "time must be in UTC (end in Z)"),
        ("valid_until", "2024-06-01T00:00:00Z", "valid_until", "must be later than valid_from"),
        ("valid_until", "2024-05-01T00:00:00Z", "valid_until", "must be later than valid_from"),
        ("feedback_requested", "yes", "feedback_requested", "must be true or false, not text"),
        (
            "related_alerts",
            [ID_A] * 101,
            "related_alerts",
            "must hold at most 100 items (this holds 101)",
        ),
        (
            "related_alerts.0",
            "alert-1",
            "related_alerts[0]",
            "must be a message id (32 lowercase hex characters)",
        ),
        ("rationale", ..., "rationale", "is required"),
    ],
)
def test_risk_profile_rules(path: str, value: Any, where: str, rule: str) -> None:
    assert rule_for(R, edit(R, path, value)) == (where, rule)


def test_in_takes_a_list_and_numbers_compare() -> None:
    data = body(R)
    data["indicators"] = [
        indicator(operator="in", values=["ECGYE", "ECPBO", "COCTG"]),
        indicator(field="quantity.value", operator="gt", values=["-1500.25"]),
    ]
    del data["related_alerts"]
    msg = accepts(R, data)
    assert isinstance(msg, RiskProfile)
    assert msg.related_alerts == () and len(msg.indicators[0].values) == 3


# Feedback ---------------------------------------------------------------------------------------

F = "feedback"


@pytest.mark.parametrize(
    ("path", "value", "where", "rule"),
    [
        ("refers_to", ..., "refers_to", "is required"),
        (
            "refers_to",
            ID_A.upper(),
            "refers_to",
            "must be a message id (32 lowercase hex characters)",
        ),
        (
            "action",
            "arrested",
            "action",
            "must be one of controlled, seized, nothing-found, not-applicable (not 'arrested')",
        ),
        ("details", "", "details", "must not be empty"),
        (
            "case_reference",
            "x" * 36,
            "case_reference",
            "must be at most 35 characters long (this is 36)",
        ),
    ],
)
def test_feedback_rules(path: str, value: Any, where: str, rule: str) -> None:
    assert rule_for(F, edit(F, path, value)) == (where, rule)


@pytest.mark.parametrize("action", ["controlled", "nothing-found", "not-applicable"])
def test_seizure_reference_needs_a_seizure(action: str) -> None:
    data = edit(F, "action", action)
    assert rule_for(F, data) == ("seizure_alert", "a seizure reference needs action 'seized'")
    del data["seizure_alert"]
    assert rule_for(F, data) == ("case_reference", "a seizure reference needs action 'seized'")
    del data["case_reference"]
    msg = accepts(F, data)
    assert isinstance(msg, Feedback) and msg.action == action


# Retraction -------------------------------------------------------------------------------------

X = "retraction"


@pytest.mark.parametrize(
    ("path", "value", "where", "rule"),
    [
        ("kind", "delete", "kind", "must be one of withdraw, correct (not 'delete')"),
        ("reason", ..., "reason", "is required"),
        ("reason", "x" * 4001, "reason", "must be at most 4000 characters long (this is 4001)"),
        ("retracts", "", "retracts", "must be a message id (32 lowercase hex characters)"),
        ("replacement", None, "replacement", "a correction names its replacement message"),
        ("replacement", ..., "replacement", "a correction names its replacement message"),
        ("replacement", ID_A, "replacement", "a message cannot replace itself"),
    ],
)
def test_retraction_rules(path: str, value: Any, where: str, rule: str) -> None:
    assert rule_for(X, edit(X, path, value)) == (where, rule)


def test_withdrawal_has_no_replacement() -> None:
    data = edit(X, "kind", "withdraw")
    assert rule_for(X, data) == (
        "replacement",
        "a withdrawal has no replacement; use kind 'correct'",
    )
    del data["replacement"]
    msg = accepts(X, data)
    assert isinstance(msg, Retraction) and msg.replacement is None
    assert accepts(X, edit(X, "replacement", ID_B)).replacement == ID_B
