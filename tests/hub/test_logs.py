"""``HUB_LOG_FORMAT=json`` (``hub/logs.py``): a record is one JSON object, uvicorn's access records with their
request's fields apart, an exception's traceback in ``exc_info``; text stays the default, uvicorn's own then."""

from __future__ import annotations

import json
import logging
import sys

from hub import logs


def formatted(record: logging.LogRecord) -> dict:
    line = logs.JsonLines().format(record)
    assert "\n" not in line  # one line, whatever the message holds
    return json.loads(line)


def test_an_access_record_carries_its_requests_fields():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "POST", "/v1/chat/completions", "1.1", 429), None)  # fmt: skip
    out = formatted(record)
    assert out["message"] == '127.0.0.1:5000 - "POST /v1/chat/completions HTTP/1.1" 429'
    assert (out["client"], out["method"], out["path"], out["http_version"], out["status"]) == (
        "127.0.0.1:5000", "POST", "/v1/chat/completions", "1.1", 429,
    )  # fmt: skip
    assert (out["level"], out["logger"]) == ("INFO", "uvicorn.access") and out["time"].endswith("+00:00")


def test_a_records_traceback_and_lines_stay_in_one_object():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord("hub.api", logging.ERROR, __file__, 1, "failed %s", ("twice\nover",),
                                   sys.exc_info())  # fmt: skip
    out = formatted(record)
    assert out["message"] == "failed twice\nover" and out["level"] == "ERROR"
    assert out["exc_info"].startswith("Traceback") and "ValueError: bad" in out["exc_info"]
    assert "client" not in out


def test_text_is_the_default_and_uvicorn_keeps_its_own_then():
    assert logs.uvicorn_config("text") is None
    assert "format" in logs.formatter("text")
    config = logs.uvicorn_config("json")
    assert {h["formatter"] for h in config["handlers"].values()} == {"json"}
    assert config["loggers"]["uvicorn.access"]["handlers"] == ["access"]
