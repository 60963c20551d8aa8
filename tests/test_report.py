"""The report page (cxcr4score.report) and its figures.

The page is checked as a reader meets it: its embedded images decode and patients come in the
order a pathologist works through them. The page in a real browser is tested on the demo run
(tests/workflow).
"""

import base64
import html
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from cxcr4score.config import default_config
from cxcr4score.report import render_report, review_order
from cxcr4score.report_figures import cohort_figure, slide_figure


def _patients():
    return pd.DataFrame({
        "patient_id": ["B", "A", "C", "D", "E"],
        "call": ["eligible", "not_eligible", "inadequate", "indeterminate", "eligible"],
        "reason": ["r"] * 5,
        "review_required": [False, True, True, True, True],
        "review_reasons": ["", "tumour not delineated", "QC", "unstable", "x"],
        "n_cells": [500, 400, 20, 300, 600],
        "pct_positive": [30.0, 0.2, np.nan, 1.1, 12.0],
        "pct_positive_ci_low": [25.0, 0.0, np.nan, 0.5, 9.0],
        "pct_positive_ci_high": [35.0, 0.6, np.nan, 2.0, 15.0],
        "h_score": [60.0, 0.2, np.nan, 1.2, 20.0],
        "allred": [6, 2, 0, 3, 5],
        "irs": [4, 1, 0, 1, 2],
    })


def _slides(patients):
    return pd.DataFrame({
        "slide_id": [f"{p}_1" for p in patients["patient_id"]],
        "patient_id": patients["patient_id"],
        "n_cells": patients["n_cells"],
        **{f"pct_{k}": [70.0, 99.8, np.nan, 98.9, 88.0] if k == 0 else [10.0, 0.2, np.nan, 1.1, 12.0]
           for k in range(4)},
        "n_positive": [150, 1, 0, 3, 72],
        "pct_positive_membranous": [90.0, 100.0, np.nan, 67.0, 50.0],
        "pct_positive_cytoplasmic": [10.0, 0.0, np.nan, 33.0, 50.0],
        "pct_positive_nuclear": [0.0] * 5,
        "pct_positive_other": [0.0] * 5,
        "qc_status": ["ok", "ok", "warning", "ok", "ok"],
        "qc_message": [np.nan, np.nan, "28 tumour cells (warning < 100)", np.nan, np.nan],
        "qc_tumour_cells": [500.0, 400.0, 28.0, 300.0, 600.0],
        "qc_blurred_tiles": [0.0, 0.6, 0.0, 0.0, 0.0],
        "i0": ["250,250,250"] * 5,
    })


def _png(side=40):
    picture = np.zeros((side, side, 3), np.uint8)
    picture[:, : side // 2] = 200
    return cv2.imencode(".png", picture)[1].tobytes()


def _embedded_images(page):
    return [cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
            for data in re.findall(r"src='data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)'", page)]


def _render(patients=None, **kwargs):
    patients = _patients() if patients is None else patients
    slides = _slides(patients)
    rng = np.random.default_rng(0)
    dab = {s: pd.DataFrame({"dab_membrane": rng.gamma(2, 0.1, 200), "dab_cytoplasm": rng.gamma(2, 0.05, 200)})
           for s in slides["slide_id"]}
    pictures = {s: _png() for s in slides["slide_id"]}
    return render_report(patients, slides, load_qc_picture=pictures.get, load_cell_dab=dab.get,
                         config=default_config(), version="9.9", **kwargs)


def test_patients_needing_a_look_come_first():
    ordered = review_order(_patients())
    assert ordered["patient_id"].tolist() == ["D", "C", "A", "E", "B"]


def test_review_order_reads_booleans_written_as_text():
    patients = _patients().astype({"review_required": str})
    assert review_order(patients)["patient_id"].tolist() == ["D", "C", "A", "E", "B"]


def test_page_embeds_every_figure_and_names_every_patient():
    page = _render()
    images = _embedded_images(page)
    # the cohort figure, then per slide its QC picture and its DAB / class / pattern figure
    assert len(images) == 1 + 2 * 5 and all(image is not None for image in images)
    text = html.unescape(page)
    assert "src='http" not in page and "src=\"" not in page  # nothing outside the page
    for patient in "ABCDE":
        assert f"Patient {patient}" in text and re.search(rf"href='#patient-\d+-{patient}'", page)
    assert text.index("Patient D") < text.index("Patient C") < text.index("Patient B")
    assert "Research use only" in text
    # the QC metric that fired is shown with its level
    assert re.search(r"<tr class='failed'><td>blurred_tiles</td><td>60%</td>", page)
    assert "thresholds:" in text and "calibrated: false" in text  # the configuration


def test_page_is_identical_when_rendered_again():
    assert _render() == _render()


def test_listed_criteria_shown_with_their_disclaimer_only_when_given():
    assert "not a trial eligibility determination" not in _render()
    patients = _patients().assign(listed_criteria_met=["true", "false", "unknown", "true", "true"],
                                  listed_criteria_reason=["HER2 negative, ECOG 0: listed criteria met"] * 5)
    page = html.unescape(_render(patients))
    assert "it is not a trial eligibility determination" in page
    assert "listed_criteria_met" in page and "HER2 negative, ECOG 0" in page


def test_patient_ids_are_escaped_and_anchored_apart():
    """Ids are free text: HTML is escaped, '$' is not matplotlib math (it raised), and ids that
    differ only in unsafe characters still get their own anchor."""
    patients = _patients().assign(patient_id=["<b>x</b>", "P$_1$x", "P 1", "P_1", "E"])
    page = _render(patients)
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    anchors = re.findall(r"<section class='patient' id='([^']+)'>", page)
    assert len(anchors) == len(set(anchors)) == 5


def test_cohort_figure_draws_a_patient_without_a_value():
    picture = cv2.imdecode(np.frombuffer(cohort_figure(review_order(_patients()), metric="pct_positive", cutoff=1.0),
                                         np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None and picture.shape[0] > 200
    assert picture.std() > 10


def test_slide_figure_with_counts_missing():
    slide = dict(_slides(_patients()).iloc[0].to_dict(), n_cells=np.nan, n_positive=np.nan)
    dab = pd.DataFrame({"dab_membrane": [0.3, 0.5], "dab_cytoplasm": [0.1, 0.2]})
    png = slide_figure(dab, slide, thresholds=(0.2, 0.4, 0.6), compartments=("membrane", "cytoplasm"))
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) is not None


def test_slide_figure_without_positive_cells_says_so():
    slide = _slides(_patients()).iloc[2].to_dict()
    dab = pd.DataFrame({"dab_membrane": [0.01, 0.02], "dab_cytoplasm": [0.0, 0.01]})
    png = slide_figure(dab, slide, thresholds=(0.2, 0.4, 0.6), compartments=("membrane", "cytoplasm"))
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) is not None


@pytest.mark.parametrize("cutoff", [0.0, 100.0])
def test_cohort_figure_for_any_cutoff(cutoff):
    patients = _patients().assign(h_score_ci_low=1.0, h_score_ci_high=200.0)
    png = cohort_figure(patients, metric="h_score", cutoff=cutoff)
    assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR) is not None
