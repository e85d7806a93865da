"""labevents/patients readers on the real MIMIC-IV clinical demo tables (v1.0 and v2.2 layouts)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ecg_k.data.errors import DataInputError
from ecg_k.data.labs import find_labevents, read_patients, read_potassium_labs


def test_v1_potassium_rows_and_missing_values(labs_v1_file: Path) -> None:
    labs, stats = read_potassium_labs(labs_v1_file, [50971, 50822])
    assert stats.rows_scanned == 2244
    assert stats.dropped == {"lab_missing_value": 3}
    assert len(labs) == 2241
    assert labs["valuenum"].between(2.3, 8.3).all()
    assert (labs["valuenum"] <= 3.5).sum() == 320 and (labs["valuenum"] < 3.5).sum() == 216
    assert (labs["valuenum"] >= 5.5).sum() == 80
    assert labs["itemid"].value_counts().to_dict() == {50971: 2012, 50822: 229}
    assert stats.comments == {"none": 2186, "verified": 20, "hemolysed": 35, "unrecognised": 0}
    assert labs["comment"].value_counts().to_dict() == {"none": 2186, "hemolysed": 35, "verified": 20}
    hemolysed = labs[labs["comment"] == "hemolysed"]
    assert set(hemolysed["itemid"]) == {50971} and hemolysed["valuenum"].between(3.0, 7.0).all()


def test_itemids_are_filtered_while_streaming(labs_v1_file: Path) -> None:
    serum, _ = read_potassium_labs(labs_v1_file, [50971])
    assert set(serum["itemid"]) == {50971}
    whole_blood, _ = read_potassium_labs(labs_v1_file, [50822])
    assert len(serum) + len(whole_blood) == 2241


def test_gzip_and_small_blocks_give_the_same_rows(labs_v1_file: Path, tmp_path: Path) -> None:
    gz = tmp_path / "labevents.csv.gz"
    with labs_v1_file.open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    plain, _ = read_potassium_labs(labs_v1_file, [50971])
    streamed, stats = read_potassium_labs(find_labevents(tmp_path), [50971], block_size=4096)
    assert stats.rows_scanned == 2244
    pd.testing.assert_frame_equal(plain, streamed)


def test_v22_layout_with_null_hadm_id(real_data: Path) -> None:
    path = (real_data / "mimic-iv-clinical-demo-2.2__santosry-nursing-pool" / "hosp"
            / "labevents_potassium_prefix_subset.csv")
    labs, stats = read_potassium_labs(path, [50971, 50822])
    assert stats.rows_scanned == 26
    assert labs["subject_id"].nunique() == 12 and len(labs) == 26 and stats.dropped == {}


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "labevents.csv"
    bad.write_text("subject_id,itemid,valuenum\n1,50971,4.0\n")
    with pytest.raises(DataInputError, match="charttime"):
        read_potassium_labs(bad, [50971])


def test_wrong_unit_and_text_values(tmp_path: Path) -> None:
    path = tmp_path / "labevents.csv"
    path.write_text(
        "subject_id,itemid,charttime,value,valuenum,valueuom\n"
        "1,50971,2180-01-01 10:00:00,4.1,4.1,mEq/L\n"
        "1,50971,2180-01-01T11:00:00,4.4,,mmol/L\n"
        "1,50971,2180-01-01 12:00:00,___,,mEq/L\n"
        "1,50971,2180-01-01 13:00:00,4.0,4.0,mg/dL\n"
    )
    labs, stats = read_potassium_labs(path, [50971])
    assert labs["valuenum"].tolist() == [4.1, 4.4]
    assert labs["comment"].tolist() == ["none", "none"]  # no comments column: every row is none
    assert stats.comments == {"none": 2, "verified": 0, "hemolysed": 0, "unrecognised": 0}
    assert labs["charttime"].dt.hour.tolist() == [10, 11]
    assert stats.dropped == {"lab_missing_value": 1, "lab_unit": 1}


def test_no_labevents_in_dir(tmp_path: Path) -> None:
    with pytest.raises(DataInputError, match="no labevents"):
        find_labevents(tmp_path)


def test_patients_table(real_data: Path) -> None:
    patients = read_patients(real_data / "mimic-iv-clinical-demo-2.2" / "hosp")
    assert patients is not None and len(patients) == 100
    assert set(patients.columns) == {"subject_id", "gender", "anchor_age"}


def test_comments_column_is_read_when_present(tmp_path: Path) -> None:
    path = tmp_path / "labevents.csv"
    path.write_text(
        "subject_id,itemid,charttime,valuenum,comments\n"
        "1,50971,2180-01-01 10:00:00,6.8,\"HEMOLYSIS FALSELY ELEVATES K..  \"\n"
        "1,50971,2180-01-01 11:00:00,6.4,\"VERIFIED.\nNOT HEMOLYZED.\"\n"
        "1,50971,2180-01-01 12:00:00,4.0,QNS\n"
        "1,50971,2180-01-01 13:00:00,4.1,\n"
    )
    labs, stats = read_potassium_labs(path, [50971])
    assert labs["comment"].tolist() == ["hemolysed", "verified", "none", "none"]
    assert stats.comments == {"none": 2, "verified": 1, "hemolysed": 1, "unrecognised": 1}


def test_tiny_demo_rows_read_without_the_larger_set(tiny_labs_file: Path) -> None:
    """The 40 demo rows shipped in tests/data: all serum, all kept, one hyper pair of rows, one 'verified'."""
    labs, stats = read_potassium_labs(tiny_labs_file, [50971, 50822])
    assert stats.rows_scanned == 40 and stats.dropped == {} and len(labs) == 40
    assert labs["itemid"].value_counts().to_dict() == {50971: 40}
    assert labs["subject_id"].nunique() == 4
    assert labs["valuenum"].min() == 3.5 and labs["valuenum"].max() == 6.9
    assert (labs["valuenum"] >= 5.5).sum() == 2 and (labs["valuenum"] <= 3.5).sum() == 1
    assert stats.comments == {"none": 39, "verified": 1, "hemolysed": 0, "unrecognised": 0}


def test_tiny_excerpts_are_the_heads_of_the_real_tables(tiny_labs_file: Path, tiny_record_list: Path,
                                                       labs_v1_file: Path, ecg_demo_root: Path) -> None:
    for tiny, full in ((tiny_labs_file, labs_v1_file), (tiny_record_list, ecg_demo_root / "record_list.csv")):
        lines = tiny.read_bytes().splitlines(keepends=True)
        assert full.read_bytes().splitlines(keepends=True)[:len(lines)] == lines
