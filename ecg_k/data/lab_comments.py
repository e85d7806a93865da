"""What a potassium lab's free-text comment says about its value: ``hemolysed``, ``verified`` or ``none``.

A haemolysed sample releases potassium from red cells, so its K+ is falsely high, exactly in the
hyperkalemia tail. MIMIC-IV writes this in ``labevents.comments`` ("HEMOLYSIS FALSELY ELEVATES K..",
"Hemolysis falsely elevates this test.  New reference range as of ___."), and also says when a high value
was checked and is real ("VERIFIED.  NOT HEMOLYZED.", "Specimen not Hemolyzed.", "VERIFIED BY REPLICATE
ANALYSIS."). The rule, per comment:

- the text is cut into clauses at ``.``, ``;``, ``,`` and newlines (not at ``:``, as in "hemolysis: none"),
  lower-cased, ``haemo-`` read as ``hemo-``, the de-identification marker ``___`` and every other
  non-letter read as a space;
- ``hemolysed``: a clause mentions haemolysis (hemolysis, hemolyzed, haemolysed, hemolytic, ...) without a
  negation (``not``, ``no``, ``non``, ``without``, ``free of``, ``absence of`` up to three words before;
  ``not``, ``absent``, ``negative``, ``none``, ``ruled out`` up to three words after);
- ``verified``: otherwise, a clause negates haemolysis ("NO HEMOLYSIS PRESENT") or says the value was
  verified, confirmed, repeated, rechecked or replicated (not "not verified");
- ``none``: everything else. A comment is *recognised* when each clause is one of the above, empty or
  de-identified, or a known notice (reference-range change, tube colour); others are ``none`` and counted.

Pure standard library (no pandas), so the database schema and the service can share the classes.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache


class LabComment(enum.StrEnum):
    """The class of a K+ lab's comment (the ``k_comment`` column of a cohort; a reviewer's mark)."""

    NONE = "none"
    VERIFIED = "verified"
    HEMOLYSED = "hemolysed"


_CLAUSE_BREAK = re.compile(r"[.;,!?\n\r]+")
_DEID = re.compile(r"_{2,}")
_NON_LETTER = re.compile(r"[^a-z]+")
_HEMOLYSIS = re.compile(r"^(?:non|un)?h(?:a?e)mol[iy]\w*$")
_VERIFY = re.compile(r"^(?:re)?(?:verif\w*|confirm\w*)$|^repeat\w*$|^recheck\w*$|^replicat\w*$")
_NEGATORS_BEFORE = frozenset({"not", "no", "non", "without", "free", "absence", "absent", "negative", "neg"})
_NEGATORS_AFTER = frozenset({"not", "absent", "negative", "neg", "none", "ruled", "excluded"})
_NEGATION_REACH = 3
_KNOWN_NOTICES = (
    re.compile(r"\breference (?:range|interval)s?\b"),  # "New reference range as of ___."
    re.compile(r"\b(?:green|gold|red|purple|lavender|blue|grey|gray|light green|mint)\s*top\b"),
    re.compile(r"\btube\b"),
)


@dataclass(frozen=True)
class CommentReading:
    """The class of one comment and whether every clause of it was recognised."""

    label: LabComment
    recognised: bool


def _words(clause: str) -> list[str]:
    text = clause.lower().replace("haemo", "hemo")
    return [w for w in _NON_LETTER.split(_DEID.sub(" ", text)) if w]


def _negated(words: list[str], at: int) -> bool:
    """Whether the word at ``at`` is negated by a nearby word or a ``non``/``un`` prefix."""
    if words[at].startswith(("non", "un")):
        return True
    before = words[max(0, at - _NEGATION_REACH):at]
    after = words[at + 1:at + 1 + _NEGATION_REACH]
    return bool(_NEGATORS_BEFORE.intersection(before) or _NEGATORS_AFTER.intersection(after))


def _clause(clause: str) -> tuple[LabComment | None, bool]:
    """(what a clause asserts, or None; recognised)."""
    words = _words(clause)
    if not words:
        return None, True
    hemolysis = [i for i, w in enumerate(words) if _HEMOLYSIS.match(w)]
    if any(not _negated(words, i) for i in hemolysis):
        return LabComment.HEMOLYSED, True
    if hemolysis:
        return LabComment.VERIFIED, True
    checks = [i for i, w in enumerate(words) if _VERIFY.match(w)]
    if checks:
        return (None if all(_negated(words, i) for i in checks) else LabComment.VERIFIED), True
    joined = " ".join(words)
    return None, any(notice.search(joined) for notice in _KNOWN_NOTICES)


@lru_cache(maxsize=65536)
def read_comment(text: str | None) -> CommentReading:
    """Classify one comment (None or empty: ``none``, recognised); see the module docstring."""
    if text is None or not text.strip():
        return CommentReading(LabComment.NONE, True)
    found: set[LabComment] = set()
    recognised = True
    for clause in _CLAUSE_BREAK.split(text):
        label, known = _clause(clause)
        recognised &= known
        if label is not None:
            found.add(label)
    for label in (LabComment.HEMOLYSED, LabComment.VERIFIED):
        if label in found:
            return CommentReading(label, True)
    return CommentReading(LabComment.NONE, recognised)


def classify_comment(text: str | None) -> LabComment:
    """The class of one comment."""
    return read_comment(text).label


def comment_counts(rows_per_text: Mapping[str | None, int]) -> dict[str, int]:
    """Rows per class from rows per distinct comment, plus ``unrecognised``: the ``none`` rows whose
    comment matched no known form."""
    counts = {label.value: 0 for label in LabComment} | {"unrecognised": 0}
    for text, rows in rows_per_text.items():
        reading = read_comment(text)
        counts[reading.label.value] += int(rows)
        counts["unrecognised"] += 0 if reading.recognised else int(rows)
    return counts
