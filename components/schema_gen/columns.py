"""What a string column's values look like: dates, date-times, free text, or categories.

Read from the values a statistics sketch kept with their counts (the rank histogram: every value of
a column with few, and the most frequent thousand of one with many), so it costs nothing beyond
StatisticsGen. Schema inference never closes the domain of dates or free text (each new day or
comment would be an anomaly), and `init` turns dates into features and leaves free text out.
"""

from __future__ import annotations

import re

DATE, DATETIME, TEXT = "date", "date-time", "free text"

# ISO 8601 as exports write it: 2007-11-09, 2007/11/09, 2007-11-09 13:05, 2007-11-09T13:05:07.5Z.
ISO_DATE = r"\d{4}[-/]\d{1,2}[-/]\d{1,2}"
ISO_TIME = r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"
ISO_DATETIME_RE = re.compile(f"{ISO_DATE}({ISO_TIME})?")
# Dates in other orders (11/9/07, 09.11.2007, Nov 9 2007): told apart, not parsed.
OTHER_DATE_RE = re.compile(
    r"\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}([ T]\d{1,2}:\d{2}.*)?"
    r"|\d{1,2}[ -]?[A-Za-z]{3,9}[ -]?\d{2,4}|[A-Za-z]{3,9}\.? \d{1,2},? \d{4}"
)
SENTENCE_END = (".", "!", "?")


def value_kind(
    counts: dict[str, int], present: int, examples: int, distinct: int | None = None
) -> str | None:
    """DATETIME or DATE when every value is an ISO date (with a time of day for DATETIME);
    "other date" when every value is a date in another order; TEXT when the values read as free
    text; None for anything else (a category, or an id). `counts`: value -> rows (all values, or
    the most frequent); `present`: the rows with a value, of `examples`; `distinct`: the count of
    distinct values (default: those in `counts`). Free text is several words per value that read as sentences (most end in
    '.', '!' or '?'), or that rarely repeat, or that are missing from most rows: `Adelie Penguin
    (Pygoscelis adeliae)` in every row is a category, `Nest never observed with full clutch.` in
    one row of ten is text, whatever the count of distinct values."""
    total = sum(counts.values())
    if not total:
        return None
    if all(ISO_DATETIME_RE.fullmatch(v) for v in counts):
        return DATETIME if any(m.group(1) for v in counts if (m := ISO_DATETIME_RE.fullmatch(v))) else DATE
    if all(OTHER_DATE_RE.fullmatch(v) for v in counts):
        return "other date"
    words = sum(len(v.split()) * n for v, n in counts.items()) / total
    sentences = sum(n for v, n in counts.items() if v.rstrip().endswith(SENTENCE_END)) / total
    repeats = present / max(distinct or len(counts), 1)
    if words >= 8 or (words >= 3 and (sentences >= 0.5 or repeats < 5 or 2 * present < examples)):
        return TEXT
    return None


# A name that says "identifier": its last word (or first, for `id_...`) as exports spell them.
_ID_WORDS = {"id", "ids", "uuid", "guid", "key", "index", "idx", "rownames", "rowname", "rownum"}
_ID_LAST_WORDS = _ID_WORDS | {"number", "num", "no", "nr"}


def named_like_id(name: str) -> bool:
    """`id`, `customer_id`, `CustomerID`, `sample_number`, `row_index`, `uuid`, `Unnamed: 0` (a
    data frame's index written out); not `idle_time` nor `number_of_rooms`."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    words = [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]
    if not words:
        return False
    return words[-1] in _ID_LAST_WORDS or words[0] in _ID_WORDS or words[0] == "unnamed"
