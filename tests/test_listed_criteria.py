"""Listed protocol criteria (HER2 status, ECOG) from a patients sheet: the rule, the sheet's
checks, and the columns appended to eligibility.csv. Reference: the rule as the README states
it (issue 23 item 4), worked by hand per case."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from cxcr4score import listed_criteria as lc
from cxcr4score.config import default_config
from cxcr4score.errors import InputError
from cxcr4score.sheets import read_patients

#: The schema's default rule (test_default_rule_is_the_schemas checks it).
DEFAULT = {"her2_status": ["negative", "low"], "ecog": [0, 1]}


@pytest.mark.parametrize(
    ("her2", "ecog", "expected"),
    [
        ("negative", 1, ("true", "HER2 negative, ECOG 1: listed criteria met")),
        ("negative", 0, ("true", "HER2 negative, ECOG 0: listed criteria met")),
        ("positive", 0, ("false", "HER2 positive not in [negative, low]")),
        ("low", 1, ("true", "HER2 low, ECOG 1: listed criteria met")),  # HER2-low is HER2-negative
        ("negative", 2, ("false", "ECOG 2 not in [0, 1]")),
        ("equivocal", 3, ("false", "HER2 equivocal not in [negative, low]; ECOG 3 not in [0, 1]")),
        ("", 1, ("unknown", "HER2 status not recorded")),
        ("negative", None, ("unknown", "ECOG not recorded")),
        ("", None, ("unknown", "HER2 status not recorded; ECOG not recorded")),
        # a recorded value that fails decides, whatever the value not recorded
        ("positive", None, ("false", "HER2 positive not in [negative, low]; ECOG not recorded")),
        ("", 4, ("false", "HER2 status not recorded; ECOG 4 not in [0, 1]")),
        (" NeGative ", 1, ("true", "HER2 negative, ECOG 1: listed criteria met")),
    ],
)
def test_default_rule(her2, ecog, expected):
    assert lc.assess_patient(her2, ecog, DEFAULT) == expected


def test_custom_rule():
    rule = {"her2_status": ["Negative", "low"], "ecog": [0, 1, 2]}
    assert lc.assess_patient("low", 2, rule) == ("true", "HER2 low, ECOG 2: listed criteria met")
    assert lc.assess_patient("negative", 3, rule) == ("false", "ECOG 3 not in [0, 1, 2]")
    assert lc.assess_patient("positive", 0, {"her2_status": ["positive"], "ecog": [0]})[0] == "true"


@pytest.mark.parametrize(
    ("rule", "words"),
    [
        ({"her2_status": ["neg"], "ecog": [0]}, "listed_criteria.her2_status"),
        ({"her2_status": [], "ecog": [0]}, "listed_criteria.her2_status"),
        ({"her2_status": ["negative"], "ecog": [6]}, "listed_criteria.ecog"),
        ({"her2_status": ["negative"], "ecog": [True]}, "listed_criteria.ecog"),
    ],
)
def test_a_rule_outside_the_vocabulary_is_refused(rule, words):
    with pytest.raises(ValueError, match=words):
        lc.assess_patient("negative", 0, rule)


@pytest.mark.parametrize(("text", "value"), [("negative", "negative"), (" LOW ", "low"), ("Positive", "positive"),
                                             ("equivocal", "equivocal"), ("", "")])
def test_her2_words_any_case(text, value):
    assert lc.her2_value(text) == value


@pytest.mark.parametrize("text", ["neg", "HER2-negative", "0", "3+", "NA", "negative?"])
def test_her2_other_words_are_refused(text):
    with pytest.raises(ValueError, match=re.escape(f"her2_status '{text}' is not one of negative, low, positive, equivocal")):
        lc.her2_value(text)


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("5", 5), (" 2 ", 2), ("", None)])
def test_ecog_grades(text, value):
    assert lc.ecog_value(text) == value


@pytest.mark.parametrize("text", ["6", "-1", "1.0", "1.5", "01", "ECOG 1", "NA"])
def test_ecog_outside_0_to_5_is_refused(text):
    with pytest.raises(ValueError, match=re.escape(f"ecog '{text}' is not an ECOG grade, an integer 0-5")):
        lc.ecog_value(text)


def _patients(rows):
    return pd.DataFrame(rows, columns=list(lc.PATIENT_COLUMNS), dtype=object)


def test_columns_follow_the_cohort_and_a_patient_missing_from_the_sheet_is_unknown():
    patients = _patients([("007", "negative", 0), ("P2", "positive", 1), ("X9", "negative", 0)])
    columns = lc.listed_criteria_columns(["P3", "007", "P2"], patients, DEFAULT)
    assert list(columns.columns) == list(lc.LISTED_CRITERIA_COLUMNS)
    assert columns.values.tolist() == [
        ["unknown", "patient not in patients sheet"],
        ["true", "HER2 negative, ECOG 0: listed criteria met"],
        ["false", "HER2 positive not in [negative, low]"],
    ]
    assert lc.listed_criteria_columns(["7"], patients, DEFAULT).iloc[0, 0] == "unknown"  # '007' is not '7'
    assert lc.patients_not_in_cohort(patients, ["P3", "007", "P2"]) == ["X9"]


def test_append_keeps_every_column_and_the_call():
    calls = pd.DataFrame({"patient_id": ["P1", "P2"], "call": ["eligible", "not_eligible"], "later": [1.5, 2.5]},
                         index=[4, 9])
    patients = _patients([("P1", "positive", 3), ("P2", "negative", 0)])
    appended = lc.append_listed_criteria(calls, patients, DEFAULT)
    assert list(appended.columns) == ["patient_id", "call", "later", *lc.LISTED_CRITERIA_COLUMNS]
    pd.testing.assert_frame_equal(appended[list(calls.columns)], calls.reset_index(drop=True))
    assert appended["listed_criteria_met"].tolist() == ["false", "true"]


# ---------------------------------------------------------------- the sheet


def test_read_patients_keeps_ids_and_drops_other_columns(tmp_path):
    (tmp_path / "p.csv").write_text("patient_id,ecog,her2_status,mrn\n007, 1 ,Negative,12345\nP2,,,999\n")
    patients = read_patients(tmp_path / "p.csv")
    assert list(patients.columns) == list(lc.PATIENT_COLUMNS)  # mrn is never read into outputs
    assert patients.values.tolist() == [["007", "negative", 1], ["P2", "", None]]


def test_read_patients_reads_as_the_sample_sheet(tmp_path):
    """Separator sniffed in a .txt, UTF-8 BOM and CRLF read; a Latin-1 sheet is named with the fix."""
    text = "patient_id;her2_status;ecog\r\nPé;low;0\r\n"
    (tmp_path / "p.txt").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert read_patients(tmp_path / "p.txt").values.tolist() == [["Pé", "low", 0]]
    (tmp_path / "latin1.txt").write_bytes(text.encode("latin-1"))
    with pytest.raises(InputError, match="latin1.txt: cannot read the patients sheet .*; save it as UTF-8"):
        read_patients(tmp_path / "latin1.txt")
    with pytest.raises(InputError, match="none.tsv: patients sheet not found"):
        read_patients(tmp_path / "none.tsv")
    (tmp_path / "p.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match=r"a patients sheet must be \.tsv, \.csv or \.txt"):
        read_patients(tmp_path / "p.xlsx")


def test_read_patients_lists_every_problem_with_row_numbers(tmp_path):
    rows = [
        "patient_id\ther2_status\tecog",
        "P1\tnegative\t0",  # row 1 fine
        "\tnegative\t1",  # row 2 empty id
        "P3\tHER2-neg\t1",  # row 3 bad HER2
        "P4\tpositive\t1.0",  # row 4 bad ECOG
        "P1\tneg\t7",  # row 5 repeated id, bad HER2, bad ECOG
    ]
    (tmp_path / "patients.tsv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError) as caught:
        read_patients(tmp_path / "patients.tsv")
    assert caught.value.problems == [
        "patients.tsv row 2: patient_id is empty",
        "patients.tsv row 3: her2_status 'HER2-neg' is not one of negative, low, positive, equivocal "
        "(any case; leave it blank when not recorded)",
        "patients.tsv row 4: ecog '1.0' is not an ECOG grade, an integer 0-5 (leave it blank when not recorded)",
        "patients.tsv row 5: her2_status 'neg' is not one of negative, low, positive, equivocal "
        "(any case; leave it blank when not recorded)",
        "patients.tsv row 5: ecog '7' is not an ECOG grade, an integer 0-5 (leave it blank when not recorded)",
        "patients.tsv row 5: patient_id 'P1' repeats row 1",
    ]


def test_read_patients_missing_or_misspelled_columns_and_no_rows(tmp_path):
    (tmp_path / "p.csv").write_text("patient_id,HER2,ECOG\n")
    with pytest.raises(InputError) as caught:
        read_patients(tmp_path / "p.csv")
    assert caught.value.problems == [
        "p.csv: missing required column 'her2_status'",
        "p.csv: missing required column 'ecog'",
        "p.csv: has no patient rows",
    ]
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty.csv: the patients sheet is empty"):
        read_patients(tmp_path / "empty.csv")


def test_default_rule_is_the_schemas():
    assert default_config()["listed_criteria"] == DEFAULT
