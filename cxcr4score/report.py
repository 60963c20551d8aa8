"""The HTML report: one self-contained page a pathologist opens from an e-mail or a shared drive.

First the cohort: every patient's metric and 95% interval against the cutoff, and the calls
with their reasons, patients that need a look first (indeterminate, inadequate, review
required). Then each patient and slide: the QC picture (thumbnail with tissue and ROI outlines;
the densest region with the measured cell and nucleus outlines coloured by class), the DAB
distribution with the thresholds, class proportions, staining pattern and the QC metrics with
their levels. Last, the configuration that made the calls. Every figure is embedded as a data
URI, so the page needs no other file.
"""

from __future__ import annotations

import base64
import html

import cv2
import numpy as np
import pandas as pd
import yaml

from . import INTENDED_USE, qc_metrics
from .listed_criteria import LISTED_CRITERIA_COLUMNS
from .report_figures import CALL_COLOURS, cohort_figure, slide_figure

_STYLE = """
body{font-family:sans-serif;margin:2em;max-width:1500px;color:#222}
.use{background:#fff3cd;border:1px solid #e0c060;padding:.8em;font-weight:bold}
table{border-collapse:collapse;font-size:90%;margin:.5em 0}td,th{border:1px solid #ccc;padding:.3em .5em;vertical-align:top}
th{background:#eee;text-align:left}img{max-width:100%;border:1px solid #ccc;display:block;margin:.5em 0}
.call{display:inline-block;padding:.1em .5em;border-radius:.3em;color:white;font-weight:bold}
section.patient{border-top:3px solid #888;margin-top:2em}section.slide{margin-left:1.5em}
.failed{background:#f8d7da}.warning{background:#fff3cd}pre{background:#f6f6f6;padding:.8em;overflow-x:auto}
"""
_PATIENT_COLUMNS = ("patient_id", "call", "reason", "review_required", "review_reasons", "n_cells",
                    "pct_positive", "h_score", "allred", "irs")
_SLIDE_FACTS = ("n_cells_detected", "n_cells", "tumour_source", "tissue_mm2", "h_score", "h_score_pixel",
                "n_immune_cells", "pct_immune_positive", "i0", "i0_source", "stain_vectors", "stain_source",
                "stain_notes")
_LISTED_NOTE = ("listed_criteria_met checks only the listed protocol criteria given in the patients sheet "
                "(HER2 status, ECOG performance status): it is not a trial eligibility determination.")
#: Order in which calls are listed: the ones a pathologist must look at first.
_CALL_ORDER = {"indeterminate": 0, "inadequate": 1}
#: JPEG quality of the embedded QC pictures: the lossless PNGs (about 3 MB each) would make a
#: cohort's page too heavy to mail (about 0.7 MB a slide at 85); the class-coloured outlines
#: stay crisp.
_JPEG_QUALITY = 85


def scored_cell_dab(cells_path, compartments):
    """The ``dab_{compartment}`` columns of a cells table's scored cells (the report's input)."""
    columns = [f"dab_{c}" for c in compartments]
    cells = pd.read_parquet(cells_path, columns=["scored", *columns])
    return cells.loc[cells["scored"].astype(bool), columns].reset_index(drop=True)


def review_order(eligibility):
    """The patients in the order the report lists them.

    Indeterminate calls first, then inadequate ones, then those whose review is required, then
    the rest; by ``patient_id`` within each group.
    """
    review = eligibility["review_required"].astype(str).str.lower().eq("true")
    rank = eligibility["call"].map(_CALL_ORDER).fillna(2 + (~review).astype(int))
    return eligibility.assign(_rank=rank).sort_values(["_rank", "patient_id"], kind="stable").drop(columns="_rank")


def _text(value):
    if isinstance(value, float):
        return "" if value != value else f"{value:,.1f}" if abs(value) >= 0.1 or value == 0 else f"{value:.3g}"
    return html.escape(str(value))


def _table(frame, columns, *, anchors=None, link=None):
    columns = [c for c in columns if c in frame.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            text = _text(row[c])
            if c == link:
                text = f"<a href='#{anchors[row[c]]}'>{text}</a>"
            elif c == "call":
                text = _badge(row[c])
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _anchors(patient_ids):
    """A unique HTML id per patient: its position (ids such as 'P 1' and 'P_1' would clash)
    and, for a readable address, its id's safe characters."""
    return {p: f"patient-{k}-" + "".join(ch for ch in str(p) if ch.isalnum() or ch in "-_.")
            for k, p in enumerate(patient_ids, start=1)}


def _badge(call):
    colour = CALL_COLOURS.get(call, "#000")
    return f"<span class='call' style='background:{colour}'>{html.escape(str(call))}</span>"


def _img(data, mime, alt):
    encoded = base64.b64encode(data).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:{mime};base64,{encoded}'>"


def _qc_jpeg(png):
    picture = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if picture is None:
        raise ValueError("QC picture is not a readable image")
    ok, encoded = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode the QC picture as JPEG")
    return encoded.tobytes()


def _qc_rows(slide, levels):
    rows = []
    for name in qc_metrics.LABELS:
        value = slide.get(f"qc_{name}")
        if value is None or value != value:
            continue
        status, _ = qc_metrics.evaluate({name: float(value)}, levels)
        rows.append(f"<tr class='{status}'><td>{name}</td><td>{html.escape(qc_metrics.format_value(name, float(value)))}"
                    f"</td><td>{status}</td><td>{html.escape(qc_metrics.describe_levels(name, levels))}</td></tr>")
    if not rows:
        return "<p>No QC metric was measured (the slide could not be read).</p>"
    head = "<tr><th>QC metric</th><th>value</th><th>level</th><th>levels</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _slide_section(slide, *, qc_png, dab, config):
    slide_id = str(slide["slide_id"])
    status = str(slide.get("qc_status", ""))
    message = slide.get("qc_message")
    parts = [f"<section class='slide'><h4>Slide {html.escape(slide_id)}</h4>",
             f"<p class='{html.escape(status)}'>QC {html.escape(status)}"
             + (f": {html.escape(str(message))}" if isinstance(message, str) and message else "") + "</p>"]
    if qc_png is not None:
        parts.append(_img(_qc_jpeg(qc_png), "image/jpeg", f"QC picture of {slide_id}"))
    if dab is not None and len(dab):
        parts.append(_img(slide_figure(dab, slide, thresholds=config["thresholds"],
                                       compartments=config["compartments"]),
                          "image/png", f"DAB distribution and classes of {slide_id}"))
    else:
        parts.append("<p>No scored cell: no DAB distribution.</p>")
    parts.append(_qc_rows(slide, config["qc"]))
    facts = "".join(f"<tr><th>{html.escape(c)}</th><td>{_text(slide[c])}</td></tr>" for c in _SLIDE_FACTS if c in slide)
    parts.append(f"<table>{facts}</table></section>")
    return "".join(parts)


def _patient_section(patient, slides, *, anchor, load_qc_picture, load_cell_dab, config):
    parts = [f"<section class='patient' id='{anchor}'>",
             f"<h3>Patient {html.escape(str(patient['patient_id']))} {_badge(patient['call'])}</h3>",
             f"<p>{html.escape(str(patient['reason']))}</p>"]
    if str(patient["review_required"]).lower() == "true":
        parts.append(f"<p><b>Review required:</b> {_text(patient['review_reasons'])}</p>")
    if LISTED_CRITERIA_COLUMNS[0] in patient:
        parts.append(f"<p>Listed criteria: {_text(patient[LISTED_CRITERIA_COLUMNS[0]])} "
                     f"({_text(patient[LISTED_CRITERIA_COLUMNS[1]])})</p>")
    for _, slide in slides.iterrows():
        slide_id = slide["slide_id"]
        parts.append(_slide_section(slide, qc_png=load_qc_picture(slide_id), dab=load_cell_dab(slide_id),
                                    config=config))
    return "".join(parts) + "</section>"


def render_report(eligibility, slides, *, load_qc_picture, load_cell_dab, config, version, calibration=""):
    """HTML text of the self-contained report.

    Parameters
    ----------
    eligibility, slides : pandas.DataFrame
        The contents of eligibility.csv and slides.csv.
    load_qc_picture : callable
        slide_id -> the QC picture's PNG bytes (re-encoded as JPEG in the page), or None.
    load_cell_dab : callable
        slide_id -> the slide's scored cells, with a ``dab_{compartment}`` column per
        compartment of ``config["compartments"]``, or None. Called one slide at a time, so
        that a cohort's pictures and cells are never all in memory at once.
    config : dict
        The effective configuration (thresholds, compartments, QC levels, assay, the rest shown).
    version : str
    calibration : str
        The thresholds and their calibration, in a sentence
        (:func:`cxcr4score.calibration_record.describe`).
    """
    ordered = review_order(eligibility)
    rule = config["eligibility"]
    assay = ", ".join(f"{k}: {html.escape(str(v) or 'not recorded')}" for k, v in config["assay"].items())
    cohort = _img(cohort_figure(ordered, metric=rule["metric"], cutoff=rule["cutoff"]), "image/png",
                  "each patient's metric with its 95% interval against the cutoff")
    columns = (*_PATIENT_COLUMNS, *[c for c in LISTED_CRITERIA_COLUMNS if c in eligibility.columns])
    listed_note = (f"<p class='use'>{html.escape(_LISTED_NOTE)}</p>"
                   if LISTED_CRITERIA_COLUMNS[0] in eligibility.columns else "")
    anchors = _anchors(ordered["patient_id"])
    patients = "".join(
        _patient_section(patient, slides[slides["patient_id"] == patient["patient_id"]],
                         anchor=anchors[patient["patient_id"]], load_qc_picture=load_qc_picture,
                         load_cell_dab=load_cell_dab, config=config)
        for _, patient in ordered.iterrows()
    )
    settings = (f"metric {rule['metric']}, cutoff {rule['cutoff']:g}, at least {rule['min_cells']} scored cells; "
                f"compartments {', '.join(config['compartments'])}, class rule {config['class_rule']}; "
                f"patient rule {config['patient_rule']}")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>cxcr4score report</title>"
        f"<style>{_STYLE}</style></head><body><h1>CXCR4 IHC eligibility report</h1>"
        f"<p class='use'>{html.escape(INTENDED_USE)}</p>"
        f"<p>cxcr4score {html.escape(version)}; assay: {assay}</p>"
        f"<p>{html.escape(calibration)}</p><p>{html.escape(settings)}</p>"
        f"<h2>Cohort</h2>{cohort}{listed_note}{_table(ordered, columns, anchors=anchors, link='patient_id')}"
        f"<h2>Patients and slides</h2>{patients}"
        f"<h2>Configuration</h2><pre>{html.escape(yaml.safe_dump(config, sort_keys=False))}</pre>"
        "</body></html>"
    )
