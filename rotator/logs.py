"""Logging: structlog configured once, JSON off a TTY, console on one, secrets redacted.

Events have dotted names (``intercom.retry``, ``rotation.transition``); ``target`` and
``rotation_id`` are bound through contextvars by the reconciler. Every event, and every record
from a standard-library logger (werkzeug, hvac's urllib3, APScheduler), runs through the same
chain, in the same shape as ours (``event`` a dotted name: ``apscheduler.log``, ``waitress.log``;
the library's sentence in ``message``, its logger in ``logger``), whose last step before
rendering is ``redact``: by key (``secret``, ``token``, ...) and by
value (every secret the process has seen, see ``rotator.redaction``). Tracebacks are rendered
without local variables, which is where secrets would otherwise hide.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor

from rotator.redaction import REDACTED, SecretValue, redact_text

LogFormat = Literal["auto", "json", "console"]

# Keys whose value is secret whatever it looks like. Intercom secret ids are not secret and are
# logged as ``intercom_id``.
SENSITIVE_KEYS = frozenset(
    {
        "secret",
        "material",
        "token",
        "password",
        "authorization",
        "jwt",
        "access_token",
        "client_secret",
        "hook_token",
        "signature",
    }
)


def redact(_logger: object, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: remove secrets by key and by value, recursively."""
    return {key: _redact_item(key, value) for key, value in event_dict.items()}


def _redact_item(key: object, value: Any) -> Any:
    if isinstance(key, str) and key.lower() in SENSITIVE_KEYS and value is not None:
        return REDACTED
    return _redact_value(value)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, SecretValue):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: _redact_item(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    # Anything else is rendered by repr() later: redact that text now.
    return redact_text(repr(value))


def library_event(_logger: object, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor for a standard-library record: our shape, a dotted ``event`` naming
    the library, its sentence as ``message`` (so a query on ``event`` finds our names only)."""
    source = str(event_dict.pop("logger", "") or "library")
    message = event_dict.pop("event", "")
    return {"message": message, "logger": source, **event_dict, "event": f"{_top(source)}.log"}


def _top(logger_name: str) -> str:
    return logger_name.partition(".")[0] or "library"


def _shared_processors(*, renderer_is_json: bool) -> list[Processor]:
    exceptions: Processor = (
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        if renderer_is_json
        else structlog.processors.format_exc_info
    )
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        exceptions,
        redact,
    ]


def configure_logging(
    fmt: LogFormat = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library's logging; safe to call again."""
    out = stream if stream is not None else sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not _isatty(out))
    renderer: Processor = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(
            colors=_isatty(out), exception_formatter=structlog.dev.plain_traceback
        )
    )
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared = _shared_processors(renderer_is_json=as_json)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, library_event, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # Chatty libraries: their request lines add nothing to ours.
    for name in ("httpx", "httpcore", "urllib3", "werkzeug", "apscheduler", "waitress", "hvac"):
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def get_logger(**initial: Any) -> structlog.typing.FilteringBoundLogger:
    """A logger; ``initial`` key-values are bound to every event it emits."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(**initial)
    return logger


def bind_context(**values: Any) -> Mapping[str, Any]:
    """Bind ``values`` (``target``, ``rotation_id``) to every event in this context."""
    return structlog.contextvars.bind_contextvars(**values)


def clear_context() -> None:
    structlog.contextvars.clear_contextvars()


__all__ = [
    "LogFormat",
    "bind_context",
    "clear_context",
    "configure_logging",
    "get_logger",
    "library_event",
    "redact",
]
