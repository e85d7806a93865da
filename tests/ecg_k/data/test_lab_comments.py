"""The K+ lab-comment classifier on every comment of the real MIMIC-IV demo potassium rows, and on the
variants a wider table may hold (spelling, case, spacing, negation, concatenated notices)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from ecg_k.data.lab_comments import LabComment, classify_comment, comment_counts, read_comment


@pytest.fixture(scope="module")
def demo_rows(labs_v1_file: Path) -> pd.DataFrame:
    return pd.read_csv(labs_v1_file, usecols=["itemid", "valuenum", "comments"], dtype={"comments": "string"})


def _class(frame: pd.DataFrame) -> pd.Series:
    return frame["comments"].map(lambda text: classify_comment(None if pd.isna(text) else text))


def test_every_haemolysis_comment_of_the_demo_is_hemolysed(demo_rows: pd.DataFrame) -> None:
    mentions = demo_rows["comments"].fillna("").str.contains("hemoly", case=False)
    negated = demo_rows["comments"].fillna("").str.contains(r"\bno(?:t)?\b", case=False, regex=True)
    hemolysis = demo_rows[mentions & ~negated]
    assert len(hemolysis) == 35 and set(hemolysis["itemid"]) == {50971}
    assert set(hemolysis["comments"].str.strip()) == {
        "HEMOLYSIS FALSELY ELEVATES K..", "Hemolysis falsely elevates this test.",
        "Hemolysis falsely elevates this test.  New reference range as of ___.",
    }
    assert (_class(hemolysis) == LabComment.HEMOLYSED).all()
    assert (_class(demo_rows) == LabComment.HEMOLYSED).sum() == 35  # and nothing else is


def test_every_not_haemolysed_form_of_the_demo_is_verified(demo_rows: pd.DataFrame) -> None:
    negated = demo_rows[demo_rows["comments"].fillna("").str.contains(r"\bno(?:t)?\s+hemoly", case=False)]
    assert len(negated) == 9
    assert set(negated["comments"].str.strip()) == {
        "VERIFIED.  NOT HEMOLYZED.", "Specimen not Hemolyzed.", "VERIFIED.  NO HEMOLYSIS.",
        "VERIFIED.  NO HEMOLYSIS PRESENT.",
    }
    assert (_class(negated) == LabComment.VERIFIED).all()
    assert negated["valuenum"].median() >= 6.0  # true hyperkalemia a keyword match would throw away


def test_demo_class_counts_and_no_unrecognised_comment(demo_rows: pd.DataFrame) -> None:
    texts = demo_rows["comments"].fillna("")
    counts = comment_counts(texts.value_counts().to_dict())
    assert counts == {"none": 2189, "verified": 20, "hemolysed": 35, "unrecognised": 0}
    verified = set(demo_rows.loc[_class(demo_rows) == LabComment.VERIFIED, "comments"].str.strip())
    assert {"VERIFIED BY ALTERNATE METHODOLOGY.", "Verified By Alternate Methodology.",
            "VERIFIED BY REPLICATE ANALYSIS.", "VERIFIED."} <= verified
    for text in ("GREEN TOP TUBE.  ", "GREENTOP.  ", "___", "New reference range as of ___.  "):
        assert read_comment(text) == read_comment(None)


@pytest.mark.parametrize(("text", "expected"), [
    ("hemolysis falsely elevates k", LabComment.HEMOLYSED),
    ("  HAEMOLYSED   SAMPLE ", LabComment.HEMOLYSED),
    ("Slightly hemolyzed; verified.", LabComment.HEMOLYSED),  # a haemolysed value stays unreliable
    ("___ hemolysis falsely elevates this test___New reference range as of ___.", LabComment.HEMOLYSED),
    ("HEMOLYSIS INDEX 3+", LabComment.HEMOLYSED),
    ("hemolytic specimen", LabComment.HEMOLYSED),
    ("Specimen non-hemolyzed.", LabComment.VERIFIED),
    ("NONHAEMOLYSED", LabComment.VERIFIED),
    ("no visible haemolysis", LabComment.VERIFIED),
    ("NO  HEMOLYSIS  PRESENT", LabComment.VERIFIED),
    ("hemolysis: none", LabComment.VERIFIED),
    ("Hemolysis absent, value confirmed", LabComment.VERIFIED),
    ("verified on repeat analysis", LabComment.VERIFIED),
    ("Result not verified", LabComment.NONE),
    ("", LabComment.NONE),
    (None, LabComment.NONE),
])
def test_variants(text: str | None, expected: LabComment) -> None:
    assert classify_comment(text) is expected


def test_unknown_comments_are_none_and_counted() -> None:
    counts = comment_counts({"QNS.": 4, "Specimen clotted": 1, "GREEN TOP.": 2, "": 10, "VERIFIED.": 1})
    assert counts == {"none": 17, "verified": 1, "hemolysed": 0, "unrecognised": 5}
    assert read_comment("QNS.").label is LabComment.NONE and not read_comment("QNS.").recognised


def test_classes_are_the_lowercase_words_used_on_disk() -> None:
    assert [c.value for c in LabComment] == ["none", "verified", "hemolysed"]
    assert all(re.fullmatch("[a-z]+", c.value) for c in LabComment)
