"""Broker messages are input like any other: a task's arguments are parsed before it runs.

Anyone who can write to the broker can put a message on our queues. A task whose arguments do not
parse (wrong types, a practice id that is not a positive integer, a GUID-sized field holding a
megabyte) is refused: one log line, one count in Redis, the message acknowledged, nothing written.
Messages Celery itself cannot use (an unregistered task name, a body that does not decode, a content
type we do not accept) are counted the same way by the hooks in ``worker.celery_app``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import structlog
from pydantic import Field, TypeAdapter, ValidationError


from reconciler.adapters.coordination import keys
from reconciler.core.errors import CoordinationError
from worker.coordination import get_redis

log = structlog.get_logger()

PracticeId = Annotated[int, Field(strict=True, gt=0, lt=2**63)]
GuidText = Annotated[str, Field(max_length=64)]
ReportMessage = Annotated[str, Field(max_length=4096)]

F = TypeVar("F", bound=Callable[..., Any])


class RefusedMessage(Exception):
    """A task's arguments did not parse."""


def count_refused(reason: str, **fields: Any) -> None:
    """Log and count one refused message; the count is best-effort (Redis may be what failed)."""
    log.warning("broker_message_refused", reason=reason, **fields)
    try:
        get_redis().incr(keys.refused_messages())
    except CoordinationError:  # counting a refusal must not turn it into a task failure
        log.debug("broker_message_refused_uncounted", exc_info=True)


def parsed_arguments(func: F) -> F:
    """Parse a task's arguments against its annotations; refuse (and count) a message that does not."""
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)
    adapters = {name: TypeAdapter(hints[name]) for name in signature.parameters if name in hints}

    def parse(args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise RefusedMessage(str(exc)) from None
        for name, value in list(bound.arguments.items()):
            if name in adapters:
                try:
                    bound.arguments[name] = adapters[name].validate_python(value)
                except ValidationError as exc:
                    # Name the argument and the rule, never echo the value: it came from anyone.
                    problems = "; ".join(e["msg"] for e in exc.errors())
                    raise RefusedMessage(f"argument {name!r}: {problems}") from None
        return bound

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = parse(args, kwargs)
        except RefusedMessage as exc:
            count_refused("arguments", task=func.__name__, error=str(exc))
            return None
        return func(*bound.args, **bound.kwargs)

    return typing.cast(F, run)
