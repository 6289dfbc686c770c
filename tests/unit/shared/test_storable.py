"""What user code controls is made storable and readable before it reaches a table or a person."""

from __future__ import annotations

from shared.db.tables.base import storable, storable_json
from shared.usercode.errors import MAX_MESSAGE, ModelCodeError, failure_message, readable


def test_storable_text_keeps_everything_postgresql_can_hold() -> None:
    assert storable("plain ünïcødé ✓ \n\t") == "plain ünïcødé ✓ \n\t"
    assert storable("a\x00b") == "a\ufffdb"
    assert storable("lone \ud800 surrogate") == "lone \ufffd surrogate"
    assert storable_json({"k\x00": ["x\x00", 1, None, {"n": "\x00"}]}) == {
        "k\ufffd": ["x\ufffd", 1, None, {"n": "\ufffd"}]
    }


def test_messages_from_user_code_are_readable_and_short() -> None:
    assert readable("line one\nline\x00two\x07\x1b[31m") == "line one\nline\ufffdtwo\ufffd\ufffd[31m"
    assert len(readable("x" * 100_000)) == MAX_MESSAGE
    assert ModelCodeError("RuntimeError: a\x00b (line 1)").detail == "RuntimeError: a\ufffdb (line 1)"
    assert "\x00" not in failure_message("model.fit", ValueError("bad\x00value"))
