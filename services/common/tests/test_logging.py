"""JSON logs: one object a line with the service, instance, level, message, extras and trace ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace

from telecrm_common.logging import JsonFormatter


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("calls", "calls-7f3a"))
    logger = logging.getLogger("telecrm.test.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def entries(stream: io.StringIO) -> list[dict[str, Any]]:
    lines = stream.getvalue().splitlines()
    return [json.loads(line) for line in lines]


def test_one_json_object_per_line_with_service_instance_level_and_extras(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.info("call %s ended", "c-1", extra={"call_id": "c-1", "sip_status": 486, "tags": ["a", "b"]})
    logger.warning("multi\nline message")

    first, second = entries(stream)
    assert first["msg"] == "call c-1 ended"
    assert first["level"] == "info"
    assert first["service"] == "calls"
    assert first["instance"] == "calls-7f3a"
    assert first["logger"] == "telecrm.test.json"
    assert first["call_id"] == "c-1"
    assert first["sip_status"] == 486
    assert first["tags"] == ["a", "b"]
    assert first["ts"].endswith("+00:00")
    assert "trace_id" not in first, "no span, no trace id"
    assert second["msg"] == "multi\nline message"
    assert second["level"] == "warning"
    for entry in (first, second):
        assert "args" not in entry
        assert "levelname" not in entry


def test_trace_and_span_ids_inside_a_span(logged: tuple[logging.Logger, io.StringIO], spans: Any) -> None:
    logger, stream = logged
    with trace.get_tracer("test").start_as_current_span("handling") as span:
        logger.info("inside")
    context = span.get_span_context()

    (entry,) = entries(stream)
    assert entry["trace_id"] == f"{context.trace_id:032x}"
    assert entry["span_id"] == f"{context.span_id:016x}"


def test_exceptions_stay_inside_the_one_line(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    try:
        raise ValueError("bad payload")
    except ValueError:
        logger.exception("handler failed")

    (entry,) = entries(stream)
    assert entry["level"] == "error"
    assert "ValueError: bad payload" in entry["exc"]
    assert "Traceback" in entry["exc"]


def test_values_json_cannot_encode_are_written_as_text(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged

    class Opaque:
        def __str__(self) -> str:
            return "opaque-thing"

    logger.info("odd", extra={"thing": Opaque(), "caller_name": "Иван"})
    (entry,) = entries(stream)
    assert entry["thing"] == "opaque-thing"
    assert entry["caller_name"] == "Иван"
    assert "Иван" in stream.getvalue(), "non-ASCII is kept readable"


def test_uvicorns_coloured_copy_of_the_message_is_left_out(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.info("Started server process [%d]", 42, extra={"color_message": "Started \x1b[36m%d\x1b[0m"})
    (entry,) = entries(stream)
    assert entry["msg"] == "Started server process [42]"
    assert "color_message" not in entry
