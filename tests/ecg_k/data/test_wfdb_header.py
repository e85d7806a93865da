"""The header parse equals ``wfdb.rdheader``, attribute by attribute and type by type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import wfdb
from wfdb.io.header import HeaderSyntaxError, parse_header_content

from ecg_k.data.wfdb_header import parse_header

EDGE_CASES = {
    "gain_0_means_200": "r 2 500 5000\nr.dat 16 0(0)/mV 16 0 0 0 0 I\nr.dat 16 1000/uV 16 0 0 0 0 II\n",
    "baseline_from_adc_zero": "r 1 500 5000\nr.dat 16 200 12 7 -3 4 0 V1\n",
    "no_units_no_name": "r 1 500 5000\nr.dat 16 200\n",
    "frame_skew_offset": "r 2 250.5/1000(3) 100 12:30:05.25 01/02/2020\nr.dat 212x2:3+24 200(-5)/mV 12 0 0 -17 0 aVL\n"
                         "r.dat 212x2:3+24 200(-5)/mV 12 0 0 5 0 aVF lead\n",
    "near_integral_rate": "r 1 499.999999999 5000\nr.dat 16 1e3(0)/mV 16 0 0 0 0 I\n",
    "comments": "# leading\nr 1 500 5000 10:00:00\n# Age: 63\nr.dat 16 200/mV 16 0 0 0 0 I\n#Sex: F\n",
    "no_signals": "r 0 500\n",
}


def _attributes(record: wfdb.Record) -> dict[str, tuple[type, Any, list[type] | None]]:
    return {name: (type(value), value, [type(v) for v in value] if isinstance(value, list) else None)
            for name, value in vars(record).items()}


def _assert_parses_as_wfdb(header: Path) -> None:
    expected = wfdb.rdheader(str(header.with_suffix("")))
    parsed = parse_header(*parse_header_content(header.read_text(encoding="ascii", errors="ignore")))
    assert _attributes(parsed) == _attributes(expected), header


@pytest.mark.parametrize("text", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_case_headers_parse_as_wfdb(tmp_path: Path, text: str) -> None:
    (tmp_path / "r.hea").write_text(text)
    _assert_parses_as_wfdb(tmp_path / "r.hea")


def test_tiny_real_headers_parse_as_wfdb(tiny_data: Path) -> None:
    headers = sorted(tiny_data.rglob("*.hea"))
    assert len(headers) == 5
    for header in headers:
        _assert_parses_as_wfdb(header)


def test_larger_real_set_parses_as_wfdb(real_data: Path) -> None:
    headers = [h for h in sorted(real_data.rglob("*.hea"))
               if not isinstance(wfdb.rdheader(str(h.with_suffix(""))), wfdb.MultiRecord)]
    assert len(headers) > 50
    for header in headers:
        _assert_parses_as_wfdb(header)


@pytest.mark.parametrize("text", ["", "r/2 1 500 5000\nr.dat 16 200 16 0 0 0 0 I\n", "r 1 500 10\n!!\n"],
                         ids=["empty", "multi_segment", "bad_signal_line"])
def test_headers_wfdb_cannot_read_as_one_segment_raise(text: str) -> None:
    with pytest.raises(ValueError):
        parse_header(*parse_header_content(text))


def test_bad_signal_line_raises_wfdbs_syntax_error() -> None:
    with pytest.raises(HeaderSyntaxError, match="signal line"):
        parse_header(*parse_header_content("r 1 500 10\n!!\n"))
