"""The lab's wire format: ``{"can_id":"135", "level":"42.930236081376314"}`` on ``trash-level``.

Both values travel as JSON strings, exactly as the lab's ``sim.js`` builds them. Decoding is
liberal in what it accepts (strings or numbers) and strict in what it lets through: anything that
is not a usable reading raises :class:`BadMessage` with a reason, never another exception.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Optional

from .errors import BadMessage

#: The subject the lab publishes on.
SUBJECT = "trash-level"
#: Payloads larger than this are rejected before parsing (a reading is ~60 bytes).
MAX_PAYLOAD = 64 * 1024
#: Longest accepted can id.
MAX_CAN_ID = 64


@dataclass(frozen=True)
class TrashLevel:
    """One reading: which can, how full (0-100 %), and an optional sequence number."""

    can_id: str
    level: float
    seq: Optional[int] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "can_id", _can_id(self.can_id))
        object.__setattr__(self, "level", _level(self.level))
        if self.seq is not None and type(self.seq) is not int:
            raise _reason("bad-type", f"seq must be a whole number, got {_show(self.seq)}")

    def encode(self) -> bytes:
        """Bytes in the lab's exact wire format (plus ``"seq"`` when set)."""
        return encode(self.can_id, self.level, self.seq)

    @classmethod
    def decode(cls, data: bytes | str) -> "TrashLevel":
        """Parse and validate a payload; raise :class:`BadMessage` with the reason otherwise."""
        can_id, level, seq = decode_fields(data)
        return cls(can_id, level, seq)


def encode(can_id: str, level: float, seq: Optional[int] = None) -> bytes:
    """Encode a reading like sim.js: both values as JSON strings, ``", "`` between them."""
    if not can_id.isalnum():
        can_id = json.dumps(can_id)[1:-1]
    body = '{"can_id":"%s", "level":"%r"' % (can_id, float(level))
    if seq is not None:
        body += ', "seq":%d' % seq
    return (body + "}").encode()


def _reason(kind: str, text: str) -> BadMessage:
    return BadMessage(text, kind)


def decode_fields(data: bytes | str) -> tuple[str, float, Optional[int]]:
    """Validate a payload and return ``(can_id, level, seq)``; the collector's hot path."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > MAX_PAYLOAD:
            raise _reason("too-large", f"payload of {len(data)} bytes is larger than {MAX_PAYLOAD}")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise _reason("not-utf8", f"payload is not UTF-8 text ({e.reason} at byte {e.start})") from None  # one reason per rejected payload; the cause's text is in it
    elif isinstance(data, str):
        if len(data) > MAX_PAYLOAD:
            raise _reason("too-large", f"payload of {len(data)} characters is larger than {MAX_PAYLOAD}")
        text = data
    else:
        raise _reason("bad-type", f"payload must be bytes or str, not {type(data).__name__}")
    try:
        obj = json.loads(text)
    except RecursionError:
        raise _reason("too-deep", "payload is JSON nested too deeply") from None  # one reason per rejected payload; the cause's text is in it
    except json.JSONDecodeError as e:
        raise _reason("not-json", f"payload is not JSON ({e.msg} at position {e.pos})") from None  # one reason per rejected payload; the cause's text is in it
    return validate(obj)


def validate(obj: Any) -> tuple[str, float, Optional[int]]:
    """Check a parsed JSON value is a reading; return ``(can_id, level, seq)``."""
    if not isinstance(obj, dict):
        raise _reason("not-object", f"payload is JSON {type(obj).__name__}, expected an object")
    try:
        raw_id = obj["can_id"]
        raw_level = obj["level"]
    except KeyError as e:
        raise _reason("missing-field", f"field {e.args[0]!r} is missing") from None  # one reason per rejected payload; the cause's text is in it
    can_id = _can_id(raw_id)
    level = _level(raw_level)
    seq = obj.get("seq")
    if seq is not None:
        if type(seq) is not int:  # bool is an int subclass, and "7" is not a sequence number
            raise _reason("bad-type", f"seq must be a whole number, got {_show(seq)}")
    return can_id, level, seq


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _can_id(raw: Any) -> str:
    if type(raw) is str:
        can_id = raw.strip()
    elif type(raw) is int:
        can_id = str(raw)
    else:
        raise _reason("bad-type", f"can_id must be a string or a whole number, got {_show(raw)}")
    if not can_id:
        raise _reason("bad-value", "can_id is empty")
    if len(can_id) > MAX_CAN_ID:
        raise _reason("bad-value", f"can_id is {len(can_id)} characters long (at most {MAX_CAN_ID})")
    return can_id


def _level(raw: Any) -> float:
    if type(raw) is str:
        try:
            level = float(raw)
        except ValueError:
            raise _reason("bad-type", f"level {_show(raw)} is not a number") from None  # one reason per rejected payload; the cause's text is in it
    elif type(raw) in (int, float):
        level = float(raw)
    else:
        raise _reason("bad-type", f"level must be a number or a numeric string, got {_show(raw)}")
    if not math.isfinite(level):
        raise _reason("not-finite", f"level {_show(raw)} is not a finite number")
    if not 0.0 <= level <= 100.0:
        raise _reason("out-of-range", f"level {level:g} is outside 0-100 %")
    return level


def to_json(reading: TrashLevel) -> dict:
    """The reading as the lab's JSON object (values as strings), e.g. for printing."""
    return json.loads(reading.encode())
