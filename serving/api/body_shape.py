"""What a JSON body may look like before it is parsed: how deep, how many keys, how long a
string. A streaming parser holds a frame per open bracket, and ijson's grew with the square
of the depth: a 3.8 MB body of two million `[` took a server to 16 GB. Measured here on the
raw bytes, at C speed, in a few milliseconds for the largest body the service accepts."""

from __future__ import annotations

import re

import numpy as np

MAX_DEPTH = 8  # a score request is 5 deep: body, records, a record, its events, an event
MAX_KEYS = 400_000  # 1,000 records of ~300 features each
MAX_STRING_BYTES = 1024  # ids, codes and dates; nothing the contract holds is longer

# a string of at most MAX_STRING_BYTES, escapes included; a longer one is left in place
_SHORT_STRING = re.compile(rb'"(?:[^"\\]|\\.){0,%d}"' % MAX_STRING_BYTES, re.S)
# +1 for a bracket that opens, -1 for one that closes, 0 for any other byte
_STEP = np.zeros(256, np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


def shape_problem(raw: bytes) -> str | None:
    """Why the body may not be parsed, or None. Strings are set aside first, so a bracket or
    a colon inside one counts for nothing; a quote left after that belongs to a string
    longer than the limit (or to no string at all)."""
    bare = np.frombuffer(_SHORT_STRING.sub(b"0", raw), np.uint8)
    if (bare == ord('"')).any():
        return f"a string longer than {MAX_STRING_BYTES} bytes, or one never closed"
    depth = int(np.cumsum(_STEP[bare], dtype=np.int32).max(initial=0))
    if depth > MAX_DEPTH:
        return f"nested {depth} deep; a score request is at most {MAX_DEPTH} deep"
    keys = int(np.count_nonzero(bare == ord(":")))
    if keys > MAX_KEYS:
        return f"{keys:,} keys; at most {MAX_KEYS:,}"
    return None
