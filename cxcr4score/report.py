"""The HTML report: intended use, the calls with their reasons, the slides, QC pictures."""

from __future__ import annotations

import html
import os
from pathlib import Path

from . import INTENDED_USE

_STYLE = """
body{font-family:sans-serif;margin:2em;max-width:1400px}
.use{background:#fff3cd;border:1px solid #e0c060;padding:.8em;font-weight:bold}
table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top}
th{background:#eee}.eligible{background:#d4edda}.not_eligible{background:#e2e3e5}
.indeterminate{background:#fff3cd}.inadequate{background:#f8d7da}img{max-width:100%;border:1px solid #ccc}
"""
_PATIENT_COLUMNS = ("patient_id", "call", "reason", "review_required", "review_reasons", "n_cells",
                    "pct_positive", "h_score", "allred", "irs")
_SLIDE_COLUMNS = ("slide_id", "patient_id", "n_cells", "pct_positive", "h_score", "h_score_pixel",
                  "i0", "qc_status", "qc_message")


def _cell(value):
    if isinstance(value, float):
        return "" if value != value else f"{value:.1f}"
    return html.escape(str(value))


def _table(frame, columns, row_class=None):
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for _, row in frame.iterrows():
        css = f' class="{html.escape(str(row[row_class]))}"' if row_class else ""
        rows.append(f"<tr{css}>" + "".join(f"<td>{_cell(row[c])}</td>" for c in columns) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_report(eligibility, slides, qc_pictures, *, out_path, assay, version, calibration=""):
    """HTML text of the report.

    Parameters
    ----------
    eligibility, slides : pandas.DataFrame
        The contents of eligibility.csv and slides.csv.
    qc_pictures : sequence of path-like
        QC PNGs, linked relative to ``out_path``.
    out_path : path-like
        Where the report will be written (for relative links).
    assay : dict
        ``antibody_clone`` and ``protocol_id`` from the config.
    version : str
    calibration : str
        The thresholds and their calibration, in a sentence
        (:func:`cxcr4score.calibration_record.describe`).
    """
    base = Path(out_path).parent
    pictures = "".join(
        f"<h3>{html.escape(Path(p).stem)}</h3><img src=\"{html.escape(os.path.relpath(p, base))}\">" for p in qc_pictures
    )
    assay_text = ", ".join(f"{k}: {html.escape(str(v) or 'not recorded')}" for k, v in assay.items())
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>cxcr4score report</title>"
        f"<style>{_STYLE}</style></head><body><h1>CXCR4 IHC eligibility report</h1>"
        f"<p class='use'>{html.escape(INTENDED_USE)}</p>"
        f"<p>cxcr4score {html.escape(version)}; assay: {assay_text}</p>"
        f"<p>{html.escape(calibration)}</p>"
        f"<h2>Patients</h2>{_table(eligibility, _PATIENT_COLUMNS, 'call')}"
        f"<h2>Slides</h2>{_table(slides, _SLIDE_COLUMNS)}"
        f"<h2>QC pictures</h2>{pictures}</body></html>"
    )
