"""Exceptions shown as one line."""

from __future__ import annotations

from connectsw.core.errors import NotFound, one_line


def test_one_line_keeps_the_first_line_only() -> None:
    assert one_line(ValueError("bad value\n  detail\n")) == "bad value"
    assert one_line(NotFound("  no execution 'x'  ")) == "no execution 'x'"


def test_typed_names_foreign_exceptions_but_not_ours() -> None:
    assert one_line(RuntimeError("kaboom\nmore"), typed=True) == "RuntimeError: kaboom"
    assert one_line(NotFound("no execution 'x'"), typed=True) == "no execution 'x'"


def test_an_empty_message_is_the_type_name() -> None:
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert one_line(TimeoutError("  "), typed=True) == "TimeoutError"


def test_exit_codes_are_documented_numbers() -> None:
    from connectsw.core.errors import ExitCode

    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "FAILED": 1,
        "INVALID_INPUT": 2,
        "PLUGIN": 3,
        "NOT_FOUND": 4,
        "NOT_ALLOWED": 5,
        "STORE": 6,
        "ERROR": 7,
        "CANCELLED": 8,
        "INTERNAL": 70,
        "HANGUP": 129,
        "INTERRUPTED": 130,
        "TERMINATED": 143,
    }


def _subclasses(cls: type) -> list[type]:
    return [cls] + [s for sub in cls.__subclasses__() for s in _subclasses(sub)]


def test_every_error_exits_with_an_exit_code_member() -> None:
    import connectsw.core.errors as errors

    for cls in _subclasses(errors.ConnectSWError):
        assert isinstance(cls.exit_code, errors.ExitCode), cls


def test_a_generic_error_is_not_a_failed_execution() -> None:
    from connectsw.core.errors import ConnectSWError, ExitCode, TaskError, TaskTimeout

    assert ConnectSWError.exit_code is ExitCode.ERROR
    assert TaskError.exit_code is TaskTimeout.exit_code is ExitCode.FAILED
    assert ConnectSWError.exit_code != TaskError.exit_code
