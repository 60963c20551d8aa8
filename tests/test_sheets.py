"""Tests of cxcr4score.sheets: sample sheets and slide folders (DESIGN section 4)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cxcr4score import sheets
from cxcr4score.errors import InputError


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_read_sheet_tsv_keeps_strings_and_resolves_paths(tmp_path):
    _touch(tmp_path / "img" / "a.svs")
    _touch(tmp_path / "img" / "a.geojson")
    (tmp_path / "slides.tsv").write_text(
        "patient_id\tslide_id\tpath\troi\tblock\n007\t007-A\timg/a.svs\timg/a.geojson\t 0012 \n"
    )
    table = sheets.read_sheet(tmp_path / "slides.tsv")
    assert list(table.columns) == list(sheets.SHEET_COLUMNS) + ["block"]
    row = table.iloc[0]
    assert row["patient_id"] == "007" and row["block"] == "0012"
    assert row["path"] == str(tmp_path / "img" / "a.svs")
    assert row["roi"] == str(tmp_path / "img" / "a.geojson")
    assert row["mpp"] == "" and row["collected"] == ""


@pytest.mark.parametrize(("name", "sep"), [("s.csv", ","), ("s.txt", ";"), ("t.txt", "\t")])
def test_read_sheet_separators(tmp_path, name, sep):
    _touch(tmp_path / "a.tif")
    lines = ["patient_id,slide_id,path,mpp,collected", "0042,S1,a.tif,0.25,2024-03-01"]
    (tmp_path / name).write_text("\n".join(line.replace(",", sep) for line in lines) + "\n")
    table = sheets.read_sheet(tmp_path / name)
    assert table.loc[0, ["patient_id", "mpp", "collected"]].tolist() == ["0042", "0.25", "2024-03-01"]


def test_read_sheet_lists_every_problem_with_row_numbers(tmp_path):
    _touch(tmp_path / "ok.tif")
    _touch(tmp_path / "ok.txt")
    (tmp_path / "folder.tif").mkdir()
    rows = [
        "patient_id\tslide_id\tpath\tmpp\troi\tcollected",
        "P1\tS1\tok.tif\t0.25\t\t2020-01-31",  # row 1 fine
        "\tS2\tok.tif\t\t\t",  # row 2 empty patient
        "P3\tS 3\tok.tif\tabc\t\t",  # row 3 bad id, bad mpp
        "P4\tS1\tmissing.tif\t-0.5\tnone.geojson\t31/01/2020",  # row 4 dup, missing, mpp, roi, date
        "P5\t\tfolder.tif\t\t\t",  # row 5 empty slide_id, folder as path
        "P6\tS6\tok.txt\t\t\t",  # row 6 not an image type
    ]
    (tmp_path / "slides.tsv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError) as caught:
        sheets.read_sheet(tmp_path / "slides.tsv")
    problems = caught.value.problems
    expected = [
        ("slides.tsv row 2:", "patient_id is empty"),
        ("slides.tsv row 3:", "slide_id 'S 3' may only contain"),
        ("slides.tsv row 3:", "mpp 'abc' is not a positive number"),
        ("slides.tsv row 4:", "mpp '-0.5' is not a positive number"),
        ("slides.tsv row 4:", "collected '31/01/2020' is not an ISO date"),
        ("slides.tsv row 4:", "image file not found"),
        ("slides.tsv row 4:", "roi file not found"),
        ("slides.tsv row 4:", "slide_id 'S1' repeats row 1"),
        ("slides.tsv row 5:", "slide_id is empty"),
        ("slides.tsv row 5:", "is a folder"),
        ("slides.tsv row 6:", "not a supported image type"),
        ("slides.tsv row 2:", "is the image of row 1 again"),
        ("slides.tsv row 3:", "is the image of row 1 again"),
    ]
    for prefix, text in expected:
        assert any(p.startswith(prefix) and text in p for p in problems), (prefix, text, problems)
    assert len(problems) == len(expected)
    assert not any(p.startswith("slides.tsv row 1:") for p in problems)


def test_read_sheet_missing_columns_and_empty(tmp_path):
    (tmp_path / "a.csv").write_text("patient,slide_id\n")
    with pytest.raises(InputError) as caught:
        sheets.read_sheet(tmp_path / "a.csv")
    assert caught.value.problems == [
        "a.csv: missing required column 'patient_id'",
        "a.csv: missing required column 'path'",
        "a.csv: has no slide rows",
    ]
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(InputError, match="empty"):
        sheets.read_sheet(tmp_path / "empty.tsv")


def test_read_sheet_bad_file_type_and_missing(tmp_path):
    (tmp_path / "a.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match=r"\.tsv, \.csv or \.txt"):
        sheets.read_sheet(tmp_path / "a.xlsx")
    with pytest.raises(InputError, match="not found"):
        sheets.read_sheet(tmp_path / "none.tsv")


@pytest.mark.parametrize(("body", "words"), [
    ("P1,S1,a.tif,extra,more\n", "more values than the header"),
    ("P1,S1,a.tif\nP2,S2,b.tif,extra\n", "cannot read the sample sheet"),
])
def test_read_sheet_ragged_rows_are_a_plain_error(tmp_path, body, words):
    (tmp_path / "a.csv").write_text("patient_id,slide_id,path\n" + body)
    with pytest.raises(InputError) as caught:
        sheets.read_sheet(tmp_path / "a.csv")
    (problem,) = caught.value.problems
    assert problem.startswith(str(tmp_path / "a.csv")) and words in problem and "\n" not in problem



def test_folder_rules(tmp_path):
    _touch(tmp_path / "P01" / "b.svs")
    _touch(tmp_path / "P01" / "a.ome.tif")
    _touch(tmp_path / "P01" / "a.roi.geojson")
    _touch(tmp_path / "P01" / "a.truth.csv")
    _touch(tmp_path / "P01" / ".hidden.tif")
    _touch(tmp_path / "P01" / "nested" / "deep.tif")  # one level only
    _touch(tmp_path / "Pat 2" / "x y.TIFF")
    _touch(tmp_path / "loose.png")
    _touch(tmp_path / "loose.geojson")
    _touch(tmp_path / ".git" / "z.tif")
    _touch(tmp_path / "notes.txt")
    table = sheets.slides_from_folder(tmp_path)
    assert list(table.columns) == list(sheets.SHEET_COLUMNS)
    assert table[["patient_id", "slide_id"]].values.tolist() == [
        ["P01", "P01__a"],
        ["P01", "P01__b"],
        ["Pat_2", "Pat_2__x_y"],
        ["loose", "loose__loose"],
    ]
    assert table["path"].tolist() == [str(tmp_path / p) for p in
                                      ("P01/a.ome.tif", "P01/b.svs", "Pat 2/x y.TIFF", "loose.png")]
    assert table["roi"].tolist() == [str(tmp_path / "P01" / "a.roi.geojson"), "", "",
                                     str(tmp_path / "loose.geojson")]
    assert (table[["mpp", "specimen", "collected"]] == "").all().all()


def test_companion_folders_are_not_patients(tmp_path):
    _touch(tmp_path / "s1.mrxs")
    _touch(tmp_path / "s1" / "Index.tif")  # inside a MIRAX data folder
    _touch(tmp_path / "s2.vsi")
    _touch(tmp_path / "_s2_" / "stack1" / "frame_t.tif")
    _touch(tmp_path / "_s2_" / "x.tif")
    table = sheets.slides_from_folder(tmp_path)
    assert table["slide_id"].tolist() == ["s1__s1", "s2__s2"]


def test_openslide_and_slideio_formats_in_folders_and_sheets(tmp_path):
    """Every OpenSlide / slideio extension is a slide; a .vms's listed JPEGs are not slides (a
    .jpg it does not list is); a folder's DICOM files are one slide."""
    for name in ("P1/a.mrxs", "P1/b.SCN", "P1/c.vmu", "P1/d.svslide", "P1/e.czi", "P1/f.bif", "P2/g.vsi"):
        _touch(tmp_path / name)
    (tmp_path / "P3").mkdir()
    (tmp_path / "P3" / "h.vms").write_text("[Virtual Microscope Specimen]\nNoLayers=1\nImageFile=h_0.jpg\n"
                                           "MapFile=h_map.jpg\nMacroImage=h_macro.jpg\n")
    for name in ("h_0.jpg", "h_map.jpg", "h_macro.jpg", "other.jpg"):
        _touch(tmp_path / "P3" / name)
    for name in ("2.dcm", "1.dcm", "3.DCM"):
        _touch(tmp_path / "P4" / name)
    table = sheets.slides_from_folder(tmp_path)
    assert table["slide_id"].tolist() == ["P1__a", "P1__b", "P1__c", "P1__d", "P1__e", "P1__f", "P2__g",
                                          "P3__h", "P3__other", "P4__1"]
    (tmp_path / "slides.csv").write_text("patient_id,slide_id,path\nP4,s,P4/2.dcm\nP1,m,P1/a.mrxs\n")
    assert sheets.read_sheet(tmp_path / "slides.csv")["path"].tolist() == [
        str(tmp_path / "P4" / "2.dcm"), str(tmp_path / "P1" / "a.mrxs")]


def test_patient_pattern_overrides_folders(tmp_path):
    _touch(tmp_path / "batch1" / "007_A.svs")
    _touch(tmp_path / "batch2" / "007_B.svs")
    _touch(tmp_path / "012_A.tif")
    table = sheets.load_slides(tmp_path, patient_pattern=r"^(?P<patient>\d+)_")
    assert table[["patient_id", "slide_id"]].values.tolist() == [
        ["007", "007__007_A"], ["007", "007__007_B"], ["012", "012__012_A"]]


def test_patient_pattern_problems(tmp_path):
    _touch(tmp_path / "007_A.svs")
    _touch(tmp_path / "other.svs")
    with pytest.raises(InputError) as caught:
        sheets.slides_from_folder(tmp_path, patient_pattern=r"^(?P<patient>\d+)_")
    assert caught.value.problems == [f"{tmp_path / 'other.svs'}: patient_pattern "
                                     r"'^(?P<patient>\d+)_' finds no patient in the file name"]
    with pytest.raises(InputError, match="no named group 'patient'"):
        sheets.slides_from_folder(tmp_path, patient_pattern=r"^(\d+)_")
    with pytest.raises(InputError, match="not a valid regular expression"):
        sheets.slides_from_folder(tmp_path, patient_pattern=r"(?P<patient>")


def test_folder_duplicate_slide_ids_and_empty(tmp_path):
    _touch(tmp_path / "P1" / "a b.svs")
    _touch(tmp_path / "P1" / "a_b.tif")
    with pytest.raises(InputError, match="P1__a_b"):
        sheets.slides_from_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "empty" / "readme.md")
    with pytest.raises(InputError, match="no slide images"):
        sheets.slides_from_folder(tmp_path / "empty")
    with pytest.raises(InputError, match="not found"):
        sheets.slides_from_folder(tmp_path / "none")


def test_folder_order_is_deterministic(tmp_path):
    for name in ("c.tif", "a.tif", "B.tif"):
        _touch(tmp_path / "P" / name)
    first = sheets.slides_from_folder(tmp_path)
    assert first["slide_id"].tolist() == ["P__B", "P__a", "P__c"]
    pd.testing.assert_frame_equal(first, sheets.slides_from_folder(tmp_path))


def test_sanitise_id():
    assert sheets.sanitise_id("Pat 2/ü-x.y_z") == "Pat_2__-x.y_z"



def test_load_slides_dispatches(tmp_path):
    _touch(tmp_path / "cohort" / "P1" / "a.tif")
    (tmp_path / "s.tsv").write_text("patient_id\tslide_id\tpath\n1\tS\tcohort/P1/a.tif\n")
    from_sheet = sheets.load_slides(tmp_path / "s.tsv", patient_pattern="ignored(?P<patient>x)")
    from_folder = sheets.load_slides(str(tmp_path / "cohort"))
    assert list(from_sheet.columns) == list(from_folder.columns) == list(sheets.SHEET_COLUMNS)
    assert from_sheet.loc[0, "path"] == from_folder.loc[0, "path"] == str(tmp_path / "cohort/P1/a.tif")
    with pytest.raises(InputError, match="slides not found"):
        sheets.load_slides(tmp_path / "nothing")


def test_the_same_image_listed_twice_is_refused(tmp_path):
    """A slide listed twice (under two slide ids, or by a relative and an absolute path, or
    through a link) would count its cells twice."""
    image = _touch(tmp_path / "img" / "a.svs")
    (tmp_path / "link.svs").symlink_to(image)
    (tmp_path / "s.tsv").write_text(
        "patient_id\tslide_id\tpath\n"
        f"P1\tA\timg/a.svs\nP1\tA2\t{image}\nP2\tB\tlink.svs\n")
    with pytest.raises(InputError) as err:
        sheets.read_sheet(tmp_path / "s.tsv")
    assert err.value.problems == [
        f"s.tsv row 2: {image} is the image of row 1 again (its cells would count twice); list each slide once",
        f"s.tsv row 3: {tmp_path / 'link.svs'} is the image of row 1 again (its cells would count twice); "
        "list each slide once"]


def test_folder_patients_that_become_one_id_are_refused(tmp_path):
    _touch(tmp_path / "Pat ö" / "A.svs")
    _touch(tmp_path / "Pat ä" / "B.svs")
    with pytest.raises(InputError, match=r"patients 'Pat ä', 'Pat ö' would all be patient_id 'Pat__'"):
        sheets.slides_from_folder(tmp_path)


def test_sheet_encodings(tmp_path):
    """A UTF-8 BOM and CRLF line ends are read; a Latin-1 sheet is named with the fix."""
    _touch(tmp_path / "a.svs")
    text = "patient_id\tslide_id\tpath\r\nPé\tA\ta.svs\r\n"
    (tmp_path / "bom.tsv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    table = sheets.read_sheet(tmp_path / "bom.tsv")
    assert table.loc[0, "patient_id"] == "Pé" and table.loc[0, "path"] == str(tmp_path / "a.svs")
    (tmp_path / "latin1.tsv").write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError, match="latin1.tsv: cannot read the sample sheet .*; save it as UTF-8"):
        sheets.read_sheet(tmp_path / "latin1.tsv")


def test_sheet_path_with_a_nul_character_is_reported_not_raised(tmp_path):
    """Found by tests/test_fuzz.py: os.path.realpath raised ValueError (embedded null byte)."""
    _touch(tmp_path / "a.tif")
    (tmp_path / "s.tsv").write_bytes(b"patient_id\tslide_id\tpath\nP1\tS1\ta.tif\nP2\tS2\ta\x00.tif\n")
    with pytest.raises(InputError) as caught:
        sheets.read_sheet(tmp_path / "s.tsv")
    assert caught.value.problems == [f"s.tsv row 2: image file not found: {tmp_path / 'a'}\x00.tif"]


def test_sheet_columns_that_repeat_once_spaces_are_removed_are_refused(tmp_path):
    """Found by tests/test_fuzz.py: 'slide_id' and ' slide_id ' gave pandas' 'columns are not
    unique' warning and one of them was dropped unseen."""
    _touch(tmp_path / "a.tif")
    (tmp_path / "s.csv").write_text("patient_id,slide_id, slide_id ,path\nP1,S1,S2,a.tif\n")
    with pytest.raises(InputError) as caught:
        sheets.read_sheet(tmp_path / "s.csv")
    assert caught.value.problems == [f"{tmp_path / 's.csv'}: column 'slide_id' appears more than once "
                                     "(spaces around names are ignored)"]
