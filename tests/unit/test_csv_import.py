"""``practices import``'s reading of the file (issue 24, Low): line numbers, escapes, open quotes."""

from __future__ import annotations

import pytest

from reconciler.usecases.importing import BadCsvFile, CsvRow, ImportSummary, iter_lines, read_rows


def write(tmp_path, text: str):
    path = tmp_path / "practices.csv"
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_a_bad_line_is_named_by_its_own_number(tmp_path):
    # A quote closed and followed by text on line 2 was reported as "line 1".
    with pytest.raises(BadCsvFile, match=r": line 2: "):
        read_rows(write(tmp_path, 'pms_type,pms_id\n"Ze"d,1\n'))
    with pytest.raises(BadCsvFile, match=r": line 4: "):
        read_rows(write(tmp_path, 'pms_type,pms_id\nZedmed,1\n\n"Ze"d,2\n'))


def test_a_row_with_an_unterminated_quote_is_refused_not_swallowing_the_rest(tmp_path):
    with pytest.raises(BadCsvFile, match=r"line 2: unexpected end of data"):
        read_rows(write(tmp_path, 'pms_type,pms_id\nZedmed,"Z1\nD4w,2\n'))


def test_rows_carry_the_line_they_start_on(tmp_path):
    rows = read_rows(write(tmp_path, 'pms_type,pms_id\r\nZedmed,1\r\n\r\nD4w,"two\r\nlines"\r\nZedmed,3\r\n'))
    assert [(r.line, r.pms_id) for r in rows] == [(2, "1"), (4, "two\r\nlines"), (6, "3")]


def test_values_from_the_file_reach_the_terminal_escaped():
    summary = ImportSummary(failed=[(CsvRow(line=2, pms_type="Zedmed", pms_id="\x1b[31mRED\x1b[0m\x07"),
                                     "the PMS ID '\x1b[2J' is not a PMS ID")])
    lines = list(iter_lines(summary))
    assert all("\x1b" not in line and "\x07" not in line for line in lines)
    assert lines[1] == "  line 2 (Zedmed \\x1b[31mRED\\x1b[0m\\x07): the PMS ID '\\x1b[2J' is not a PMS ID"
