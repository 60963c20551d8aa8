"""Listed protocol criteria beside CXCR4: HER2 status and ECOG performance status per patient.

Checks the values a user gives in a patients sheet (config ``patients``) against the accepted
values of config ``listed_criteria``, and appends the result after the eligibility contract
columns. It is not a trial eligibility determination: a protocol has many more criteria, and
the CXCR4 ``call`` is never changed by these. Pure functions; the sheet is read by
:func:`cxcr4score.sheets.read_patients`.
"""

from __future__ import annotations

import re

import pandas as pd

#: HER2 status words of the patients sheet (any case). ``low`` (IHC 1+, or 2+ with a negative
#: ISH) is HER2-negative by ASCO/CAP (the default rule lists it beside ``negative``).
HER2_STATUSES = ("negative", "low", "positive", "equivocal")

#: ECOG performance status grades (Oken et al. 1982).
ECOG_GRADES = tuple(range(6))

#: Columns of the patients sheet; any other column is ignored.
PATIENT_COLUMNS = ("patient_id", "her2_status", "ecog")

#: Columns appended to ``eligibility.csv`` when a patients sheet is given.
LISTED_CRITERIA_COLUMNS = ("listed_criteria_met", "listed_criteria_reason")

MET, NOT_MET, UNKNOWN = "true", "false", "unknown"

_ECOG_RE = re.compile(r"[0-5]")


def her2_value(text: str) -> str:
    """A sheet's ``her2_status`` as one of :data:`HER2_STATUSES`, or '' when not recorded.

    Raises
    ------
    ValueError
        Naming the value and the words accepted.

    Examples
    --------
    >>> her2_value(" Negative "), her2_value("")
    ('negative', '')
    """
    word = text.strip().lower()
    if word and word not in HER2_STATUSES:
        raise ValueError(f"her2_status {text!r} is not one of {', '.join(HER2_STATUSES)} "
                         "(any case; leave it blank when not recorded)")
    return word


def ecog_value(text: str) -> int | None:
    """A sheet's ``ecog`` as an integer 0-5, or None when not recorded.

    Raises
    ------
    ValueError
        Naming the value.

    Examples
    --------
    >>> ecog_value("1"), ecog_value(" ")
    (1, None)
    """
    text = text.strip()
    if not text:
        return None
    if not _ECOG_RE.fullmatch(text):
        raise ValueError(f"ecog {text!r} is not an ECOG grade, an integer 0-5 (leave it blank when not recorded)")
    return int(text)


def _accepted(criteria: dict) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """The accepted HER2 words and ECOG grades of config ``listed_criteria``, checked."""
    her2 = tuple(str(word).strip().lower() for word in criteria["her2_status"])
    ecog = tuple(criteria["ecog"])
    if not her2 or set(her2) - set(HER2_STATUSES):
        raise ValueError(f"listed_criteria.her2_status must list some of {HER2_STATUSES}, got {criteria['her2_status']!r}")
    if not ecog or any(isinstance(g, bool) or g not in ECOG_GRADES for g in ecog):
        raise ValueError(f"listed_criteria.ecog must list some of {ECOG_GRADES}, got {criteria['ecog']!r}")
    return her2, ecog


def _listed(values) -> str:
    return f"[{', '.join(str(v) for v in values)}]"


def assess_patient(her2_status: str, ecog: int | None, criteria: dict) -> tuple[str, str]:
    """Whether one patient's recorded values meet the listed criteria.

    Parameters
    ----------
    her2_status : str
        One of :data:`HER2_STATUSES` (any case), or '' when not recorded.
    ecog : int or None
        ECOG grade 0-5, or None when not recorded.
    criteria : dict
        Config ``listed_criteria``: ``her2_status`` (accepted words) and ``ecog`` (accepted
        grades).

    Returns
    -------
    met : str
        ``'true'`` when every criterion is met, ``'false'`` when a recorded value is not
        accepted (whatever the other), else ``'unknown'`` (a value not recorded).
    reason : str
        E.g. "HER2 negative, ECOG 1: listed criteria met", or each criterion not met or not
        recorded: "ECOG 2 not in [0, 1]", "HER2 status not recorded".

    Examples
    --------
    >>> assess_patient("negative", 2, {"her2_status": ["negative"], "ecog": [0, 1]})
    ('false', 'ECOG 2 not in [0, 1]')
    """
    her2_ok, ecog_ok = _accepted(criteria)
    her2_status = her2_status.strip().lower()
    checks = (
        ("HER2 status not recorded", None) if not her2_status
        else (f"HER2 {her2_status} not in {_listed(her2_ok)}", her2_status in her2_ok),
        ("ECOG not recorded", None) if ecog is None
        else (f"ECOG {ecog} not in {_listed(ecog_ok)}", ecog in ecog_ok),
    )
    if all(ok for _, ok in checks):
        return MET, f"HER2 {her2_status}, ECOG {ecog}: listed criteria met"
    met = NOT_MET if any(ok is False for _, ok in checks) else UNKNOWN
    return met, "; ".join(text for text, ok in checks if not ok)


def listed_criteria_columns(patient_ids, patients: pd.DataFrame, criteria: dict) -> pd.DataFrame:
    """:data:`LISTED_CRITERIA_COLUMNS` for each patient, in the order of ``patient_ids``.

    Parameters
    ----------
    patient_ids : sequence of str
        The cohort's patients (``eligibility.csv`` ``patient_id``).
    patients : pandas.DataFrame
        The patients sheet as :func:`cxcr4score.sheets.read_patients` returns it: one row per
        patient, ``her2_status`` a word or '', ``ecog`` an integer or None.
    criteria : dict
        Config ``listed_criteria``.

    Returns
    -------
    pandas.DataFrame
        ``listed_criteria_met`` ('true', 'false' or 'unknown') and ``listed_criteria_reason``;
        a patient missing from the sheet is 'unknown', "patient not in patients sheet".
    """
    recorded = {row.patient_id: (row.her2_status, row.ecog) for row in patients.itertuples()}
    rows = [assess_patient(*recorded[pid], criteria) if pid in recorded else (UNKNOWN, "patient not in patients sheet")
            for pid in patient_ids]
    return pd.DataFrame(rows, columns=list(LISTED_CRITERIA_COLUMNS), dtype=object)


def append_listed_criteria(calls: pd.DataFrame, patients: pd.DataFrame, criteria: dict) -> pd.DataFrame:
    """``calls`` (eligibility.csv) with :data:`LISTED_CRITERIA_COLUMNS` after all its columns.

    Every other column, the CXCR4 ``call`` among them, is left as it was. See
    :func:`listed_criteria_columns`.
    """
    assessed = listed_criteria_columns(calls["patient_id"].tolist(), patients, criteria)
    return pd.concat([calls.reset_index(drop=True), assessed], axis=1)


def patients_not_in_cohort(patients: pd.DataFrame, patient_ids) -> list[str]:
    """The sheet's patient ids that no slide belongs to, in sheet order (a warning, not an error)."""
    cohort = set(patient_ids)
    return [pid for pid in patients["patient_id"] if pid not in cohort]
