"""Text from the wire in a form that always encodes.

Two kinds of text arrive that Python can hold but not encode as UTF-8:

* a lone surrogate (U+D800..U+DFFF): JSON's ``"\\udc00"`` escape, which JavaScript
  strings and ``JSON.stringify`` produce freely. `json.loads` joins an escaped surrogate
  *pair* into its character; only a lone one stays lone.
* bytes that are not UTF-8 in a NATS subject, decoded with ``surrogateescape`` by the
  connection (`adapters/nats/safeclient.py`): each such byte is one U+DC80..U+DCFF.

`js_view(s)` is the signer's view of a JSON string: what ECMAScript's well-formed
``JSON.stringify`` writes for it, without the quotes, for the code points that would not
encode (a lone surrogate becomes the six characters ``\\udc00``); every other character
is kept as it is. It is what the service keeps, shows and writes for such a string: the
signature is checked over the parsed value itself (`canonical.canonical_json` escapes
the surrogate exactly so), and everything derived from it (ids, reasons, events, dead
letters) can always be encoded. Two strings that differ only there stay different.

Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "has_raw_bytes",
    "has_surrogates",
    "js_view",
    "printable_subject",
    "subject_bytes",
]

_SURROGATE_RE: Final = re.compile("[\ud800-\udfff]")
_RAW_BYTE_RE: Final = re.compile("[\udc80-\udcff]")


def has_surrogates(text: str) -> bool:
    """True if `text` cannot be encoded as UTF-8 (it holds a surrogate code point)."""
    return not text.isascii() and _SURROGATE_RE.search(text) is not None


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def js_view(text: str) -> str:
    """`text` with every surrogate code point written as its JSON escape ``\\udxxx``."""
    if text.isascii():
        return text
    return _SURROGATE_RE.sub(_escape, text)


def has_raw_bytes(subject: str) -> bool:
    """True if `subject` came from bytes that were not UTF-8 (surrogate-escaped)."""
    return not subject.isascii() and _RAW_BYTE_RE.search(subject) is not None


def subject_bytes(subject: str) -> bytes:
    """The subject exactly as it was on the wire."""
    return subject.encode("utf-8", "surrogateescape")


def printable_subject(subject: str) -> str:
    """An always-encodable, readable form: raw bytes as ``\\xNN``, the rest as it is."""
    if subject.isascii():
        return subject
    if has_raw_bytes(subject):
        subject = subject_bytes(subject).decode("utf-8", "backslashreplace")
    return js_view(subject)
