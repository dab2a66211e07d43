"""Every BorderlinkError crosses a process boundary as itself (issue 12: crypto runs in worker
processes, and a ValidationError raised there could not be unpickled in the node)."""

from __future__ import annotations

import pickle

import pytest

from protocol import errors
from protocol.errors import BorderlinkError, ValidationError


def _all_errors() -> list[type[BorderlinkError]]:
    """The hierarchy's classes in protocol/errors.py (the same on every test worker, whatever
    else was imported; the node's own subclasses inherit the same __reduce__)."""
    found: list[type[BorderlinkError]] = []
    todo: list[type[BorderlinkError]] = [BorderlinkError]
    while todo:
        cls = todo.pop()
        if cls.__module__ == errors.__name__:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(found, key=lambda c: c.__name__)


def test_every_error_class_of_the_hierarchy_is_found_here() -> None:
    names = {c.__name__ for c in _all_errors()}
    assert {"ValidationError", "Rejected", "UnknownSender", "PartialDelivery"} <= names


def test_an_error_of_the_nodes_own_keeps_its_class_across_pickle() -> None:
    from node.runtime import WorkerLost

    back = pickle.loads(pickle.dumps(WorkerLost("the crypto worker ended", hint="try again")))
    assert type(back) is WorkerLost and back.hint == "try again" and back.exit_code == 3


def test_a_validation_error_keeps_its_fields_across_pickle() -> None:
    exc = ValidationError("meta.tlp", "must be one of CLEAR, GREEN", hint="see --help", kind="enum")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is ValidationError
    assert (back.path, back.rule, back.kind, back.hint) == ("meta.tlp", exc.rule, "enum", exc.hint)
    assert str(back) == "meta.tlp: must be one of CLEAR, GREEN"
    assert back.exit_code == 1


@pytest.mark.parametrize("cls", _all_errors(), ids=lambda c: c.__name__)
def test_every_error_round_trips_with_its_message_hint_and_exit_code(
    cls: type[BorderlinkError],
) -> None:
    exc = cls.__new__(cls)
    BorderlinkError.__init__(exc, "what went wrong", hint="what to do")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert (str(back), back.hint, back.exit_code) == (
        "what went wrong",
        "what to do",
        cls.exit_code,
    )
    assert getattr(back, "reason", None) == getattr(exc, "reason", None)
