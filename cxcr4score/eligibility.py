"""Per-slide scores and the per-patient eligibility call, its stability and review flags.

Pure functions on pandas tables; no I/O. The rules are DESIGN.md section 5 ("Call", "patient
rule", "intervals"); the output columns are its section 4 contract.
"""

from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import pandas as pd

from .celltype import TYPING_TOLERANCE
from .segmentation_stability import CELL_EXPANSION_TOLERANCE_UM, NUCLEUS_THRESHOLD_TOLERANCE, VARIANT_NAMES
from .constants import HIST_BINS
from .score import (
    COUNT_COLUMNS,
    allred_score,
    classify_cells,
    count_classes,
    irs_score,
    pixel_h_score,
    score_intervals,
    summarize_counts,
)

#: Score columns shared by ``results/slides.csv`` and ``results/eligibility.csv`` (DESIGN section 4).
SCORE_COLUMNS = (
    "n_cells", "pct_0", "pct_1", "pct_2", "pct_3",
    "pct_positive", "pct_positive_ci_low", "pct_positive_ci_high",
    "h_score", "h_score_ci_low", "h_score_ci_high",
    "h_score_membrane", "h_score_cytoplasm", "h_score_nucleus", "h_score_pixel",
    "allred", "irs",
)  # fmt: skip

#: Columns of :func:`slide_scores`.
SLIDE_SCORE_COLUMNS = ("slide_id", *SCORE_COLUMNS)

#: Columns of :func:`patient_eligibility`, in the contract's order (DESIGN section 4).
ELIGIBILITY_COLUMNS = (
    "patient_id", "call", "reason", "review_required", "review_reasons", "tumour_source", "n_slides",
    *SCORE_COLUMNS,
    "metric", "cutoff", "thresholds", "compartments", "cxcr4score_version",
)  # fmt: skip

#: Eligibility metrics (config ``eligibility.metric``).
METRICS = ("pct_positive", "h_score")

#: How a patient's slides are combined (config ``patient_rule``).
PATIENT_RULES = ("pooled", "any_slide", "all_slides", "most_recent")

#: Scoring variants in ``blocks``: the nominal one, then the sensitivity re-evaluations.
NOMINAL = "nominal"
VARIANTS = ("thresholds_minus", "thresholds_plus", "alt_i0", "typing_fewer", "typing_more", *VARIANT_NAMES)

#: DAB columns with an alternative-background twin ``<name>_alt`` (the ``alt_i0`` variant).
_ALT_COLUMNS = ("dab_nucleus", "dab_cytoplasm", "dab_membrane", "dab_cell")

#: Per-compartment ``blocks.measure`` values and the H-score column each one feeds.
COMPARTMENT_MEASURES = {
    "class_membrane": "h_score_membrane",
    "class_cytoplasm": "h_score_cytoplasm",
    "class_nucleus": "h_score_nucleus",
}
#: All ``blocks.measure`` values; ``class`` (the scored class) feeds the call and main scores.
MEASURES = ("class", *COMPARTMENT_MEASURES)

#: Where tumour cells come from, most to least reliable; the first two count as delineated.
TUMOUR_SOURCES = ("roi", "classifier", "morphology", "all_cells")
_DELINEATED = ("roi", "classifier")
_NOT_DELINEATED_TEXT = {
    "morphology": "tumour not delineated, tumour cells by morphology",
    "all_cells": "tumour not delineated, all cells scored",
}

#: A slide's staining is predominantly nuclear, and its patient flagged for review, when more
#: than this percentage of its positive scored cells, or of its scored cells with DAB at 1+ in
#: any compartment, are stained most in the nucleus (CXCR4 is read on membrane and cytoplasm;
#: nuclear DAB there points to another antigen or a nuclear clone), counted from this many.
NUCLEAR_PATTERN_PCT, PATTERN_MIN_POSITIVE = 50.0, 10

_DEFINITE = ("eligible", "not_eligible")
_COMPARISON = {"eligible": ">=", "not_eligible": "<", "indeterminate": "CI spans"}
_INTERVAL_KEYS = ("n_bootstrap", "seed", "confidence", "min_blocks", "design_effect")
_EMPTY_HIST = np.zeros((2, HIST_BINS), np.int64)


@dataclass(frozen=True)
class _Settings:
    """The parts of the effective config that scoring and calls use, validated."""

    metric: str
    cutoff: float
    min_cells: int
    tolerance: float
    rule: str
    calibrated: bool
    thresholds_label: str
    compartments_label: str
    pixel_thresholds: tuple
    intervals: dict
    control: dict | None = None  # config internal_control when enabled
    cells_noun: str = "tumour cells"  # "cells" when every cell is scored (tumour not delineated)


def _settings(config):
    """Validate and extract the config keys used here (ValueError naming a bad value)."""
    eligibility = config["eligibility"]
    if eligibility["metric"] not in METRICS:
        raise ValueError(f"eligibility.metric must be one of {METRICS}, got {eligibility['metric']!r}")
    if config["patient_rule"] not in PATIENT_RULES:
        raise ValueError(f"patient_rule must be one of {PATIENT_RULES}, got {config['patient_rule']!r}")
    rule = config["class_rule"]
    return _Settings(
        metric=eligibility["metric"],
        cutoff=float(eligibility["cutoff"]),
        min_cells=int(eligibility["min_cells"]),
        tolerance=float(eligibility["threshold_tolerance"]),
        rule=config["patient_rule"],
        calibrated=bool(config["calibrated"]),
        thresholds_label="/".join(f"{t:g}" for t in config["thresholds"]),
        compartments_label=",".join(config["compartments"]) if rule == "max" else rule,
        pixel_thresholds=tuple(config["pixel_thresholds"]),
        intervals={k: config["intervals"][k] for k in _INTERVAL_KEYS},
        control=config["internal_control"] if config["internal_control"]["enabled"] else None,
    )


def variant_block_counts(measurements, classified, scored, *, config, alt_differs, typing_scored=None):
    """Class counts of the scored cells per 500 um block, nominal and for each sensitivity variant.

    Parameters
    ----------
    measurements : pandas.DataFrame
        One slide's cells as measured (``block_id``, DAB columns and their ``_alt`` twins).
    classified : pandas.DataFrame
        The same cells with the nominal classes (:func:`cxcr4score.score.classify_cells`).
    scored : (K,) ndarray of bool
        Which cells are scored.
    config : dict
        Effective configuration (thresholds, class settings, ``eligibility.threshold_tolerance``).
    alt_differs : bool
        Whether the alternative I0 / stain choice differs from the one used (measured glass
        or estimated stains); only then is the ``alt_i0`` variant counted.
    typing_scored : dict, optional
        ``{"typing_fewer": mask, "typing_more": mask}``: the cells scored when the tumour
        typing limits are shifted towards fewer / more tumour cells
        (:data:`cxcr4score.celltype.TYPING_TOLERANCE`); their nominal classes are counted.

    Returns
    -------
    pandas.DataFrame
        Long table ``variant, measure, block_id, n0..n3``: the nominal counts of every
        measure (:data:`MEASURES`), then the scored class with thresholds -/+ the tolerance,
        with the alternative I0 / stain choice (DESIGN section 5) and over the cells scored
        under shifted typing.
    """
    thresholds = np.asarray(config["thresholds"], dtype=np.float64)
    tolerance = config["eligibility"]["threshold_tolerance"]
    blocks = classified["block_id"].to_numpy()[scored]
    parts = [_count_rows(classified[m].to_numpy()[scored], blocks, variant=NOMINAL, measure=m) for m in MEASURES]
    for variant, shift in (("thresholds_minus", -tolerance), ("thresholds_plus", tolerance)):
        shifted = classify_cells(measurements, config, thresholds=thresholds + shift)["class"].to_numpy()[scored]
        parts.append(_count_rows(shifted, blocks, variant=variant, measure="class"))
    if alt_differs:
        swapped = measurements.copy()
        for name in _ALT_COLUMNS:
            swapped[name] = measurements[f"{name}_alt"]
        alt = classify_cells(swapped, config)["class"].to_numpy()[scored]
        parts.append(_count_rows(alt, blocks, variant="alt_i0", measure="class"))
    nominal = classified["class"].to_numpy()
    block_ids = classified["block_id"].to_numpy()
    for variant, mask in (typing_scored or {}).items():
        parts.append(_count_rows(nominal[mask], block_ids[mask], variant=variant, measure="class"))
    return pd.concat(parts, ignore_index=True)


def combine_block_counts(parts):
    """The block counts of a whole slide from those of parts of it.

    Parameters
    ----------
    parts : sequence of pandas.DataFrame
        :func:`variant_block_counts` of each part of the slide's cells (at least one).

    Returns
    -------
    pandas.DataFrame
        What :func:`variant_block_counts` gives for all the cells at once: a block holding
        cells of several parts has their counts summed; nominal measures in :data:`MEASURES`
        order, then the variants in :data:`VARIANTS` order, blocks ascending.
    """
    key = ["variant", "measure", "block_id"]
    counts = pd.concat(parts, ignore_index=True).groupby(key, sort=False, as_index=False).sum()
    variant_rank = counts["variant"].map({v: k for k, v in enumerate((NOMINAL, *VARIANTS))}).to_numpy()
    measure_rank = counts["measure"].map({m: k for k, m in enumerate(MEASURES)}).to_numpy()
    order = np.lexsort([counts["block_id"].to_numpy(), measure_rank, variant_rank])
    return counts.iloc[order].reset_index(drop=True)


def _count_rows(classes, blocks, *, variant, measure):
    counts = count_classes(classes, blocks).rename_axis("block_id").reset_index()
    counts.insert(0, "measure", measure)
    counts.insert(0, "variant", variant)
    return counts


def _variant_label(variant, settings):
    """How a variant is named in reasons, e.g. 'thresholds +0.05'."""
    return {
        "thresholds_minus": f"thresholds -{settings.tolerance:g}",
        "thresholds_plus": f"thresholds +{settings.tolerance:g}",
        "alt_i0": "the alternative I0/stain choice",
        "typing_fewer": f"tumour typing limits shifted {TYPING_TOLERANCE:.0%} towards fewer tumour cells",
        "typing_more": f"tumour typing limits shifted {TYPING_TOLERANCE:.0%} towards more tumour cells",
        "nuclei_fewer": f"the nucleus threshold {NUCLEUS_THRESHOLD_TOLERANCE:.0%} higher (fewer nuclei)",
        "nuclei_more": f"the nucleus threshold {NUCLEUS_THRESHOLD_TOLERANCE:.0%} lower (more nuclei)",
        "cells_smaller": f"cells expanded {CELL_EXPANSION_TOLERANCE_UM:g} um less",
        "cells_larger": f"cells expanded {CELL_EXPANSION_TOLERANCE_UM:g} um more",
    }[variant]


def _require_columns(table, name, columns):
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}")


def _index_blocks(blocks):
    """{(variant, measure, slide_id): (n_blocks, 4) int64 counts}, rows of a block summed."""
    _require_columns(blocks, "blocks", ["slide_id", "variant", "measure", "block_id", *COUNT_COLUMNS])
    for column, allowed in (("variant", (NOMINAL, *VARIANTS)), ("measure", MEASURES)):
        unknown = sorted(set(blocks[column]) - set(allowed))
        if unknown:
            raise ValueError(f"blocks.{column} has unknown values {unknown}; allowed {allowed}")
    keys = ["variant", "measure", "slide_id", "block_id"]
    summed = blocks.groupby(keys, sort=True)[list(COUNT_COLUMNS)].sum()
    return {key: g.to_numpy(np.int64) for key, g in summed.groupby(level=[0, 1, 2], sort=False)}


def _slide_blocks(counts, variant, measure, slide_id):
    """Block counts of a slide; a variant absent for the slide falls back to the nominal one."""
    nominal = counts.get((NOMINAL, measure, slide_id), np.zeros((0, 4), np.int64))
    return counts.get((variant, measure, slide_id), nominal)


def _pooled_blocks(counts, variant, measure, slide_ids):
    """(n_blocks, 4) counts of the slides' blocks, stacked, and the slide of each block."""
    arrays = [_slide_blocks(counts, variant, measure, sid) for sid in slide_ids]
    strata = np.repeat(np.asarray(slide_ids, dtype=object), [len(a) for a in arrays])
    return np.concatenate([np.zeros((0, 4), np.int64), *arrays]), strata


@dataclass(frozen=True)
class _Unit:
    """Scores of a set of slides under one variant, and the call they make on their own."""

    slide_ids: tuple
    stats: dict
    call: str


def _unit_call(stats, settings):
    """inadequate / eligible / not_eligible / indeterminate from the metric's interval."""
    if stats["n_cells"] == 0 or stats["n_cells"] < settings.min_cells:
        return "inadequate"
    if stats[f"{settings.metric}_ci_low"] >= settings.cutoff:
        return "eligible"
    if stats[f"{settings.metric}_ci_high"] < settings.cutoff:
        return "not_eligible"
    return "indeterminate"


def _score_unit(slide_ids, counts, variant, settings):
    """Pool the slides' blocks (strata = slide), score them and make the unit's call."""
    block_counts, strata = _pooled_blocks(counts, variant, "class", slide_ids)
    stats = summarize_counts(block_counts.sum(axis=0)) | score_intervals(
        block_counts, strata, **settings.intervals
    )
    return _Unit(tuple(slide_ids), stats, _unit_call(stats, settings))


def _score_columns(unit, counts, hists, settings):
    """The SCORE_COLUMNS of a nominal unit (adds compartment, pixel, Allred and IRS scores)."""
    totals = {m: _pooled_blocks(counts, NOMINAL, m, unit.slide_ids)[0].sum(axis=0) for m in MEASURES}
    columns = {k: unit.stats[k] for k in SCORE_COLUMNS if k in unit.stats}
    for measure, column in COMPARTMENT_MEASURES.items():
        columns[column] = summarize_counts(totals[measure])["h_score"]
    hist = sum((hists[sid] for sid in unit.slide_ids), _EMPTY_HIST)
    columns["h_score_pixel"] = pixel_h_score(hist, thresholds=settings.pixel_thresholds)
    columns["allred"] = allred_score(totals["class"])
    columns["irs"] = irs_score(totals["class"])
    return columns


# ---------------------------------------------------------------- reason text


def _fmt(value, settings):
    """A metric value as written in reasons: '23.1%' or '123'."""
    if np.isnan(value):
        return "n/a"
    return f"{value:.1f}%" if settings.metric == "pct_positive" else f"{value:.0f}"


def _fmt_cutoff(settings):
    return f"{settings.cutoff:g}%" if settings.metric == "pct_positive" else f"{settings.cutoff:g}"


def _bound_text(value, cutoff, digits):
    """A CI bound with more digits where rounding would put it on the cutoff (0.96 -> '0.96', not '1.0')."""
    while digits < 3 and value != cutoff and round(value, digits) == cutoff:
        digits += 1
    return f"{value:.{digits}f}"


def _measurement(unit, settings):
    """'pct_positive 23.1% (95% CI 17.9-28.8)'."""
    m, stats = settings.metric, unit.stats
    digits = 1 if m == "pct_positive" else 0
    low, high = (_bound_text(stats[f"{m}_ci_{side}"], settings.cutoff, digits) for side in ("low", "high"))
    level = 100 * settings.intervals["confidence"]
    return f"{m} {_fmt(stats[m], settings)} ({level:g}% CI {low}-{high})"


def _over(unit, units, settings):
    """'over 18,204 tumour cells in 2 slides (S1 25.0%, S2 20.2%)'."""
    k = len(unit.slide_ids)
    values = ", ".join(f"{sid} {_fmt(units[sid].stats[settings.metric], settings)}" for sid in unit.slide_ids)
    return f"over {unit.stats['n_cells']:,} {settings.cells_noun} in {k} slide{'s' * (k != 1)} ({values})"


def _describe(unit, units, settings):
    """One sentence stating a unit's call and the values behind it."""
    if unit.call == "inadequate":
        k = len(unit.slide_ids)
        cells = ", ".join(f"{sid} {units[sid].stats['n_cells']:,} cells" for sid in unit.slide_ids)
        return (
            f"only {unit.stats['n_cells']:,} {settings.cells_noun} (< {settings.min_cells:,} required) "
            f"in {k} slide{'s' * (k != 1)} ({cells})"
        )
    comparison = f"{_COMPARISON[unit.call]} cutoff {_fmt_cutoff(settings)}"
    return f"{_measurement(unit, settings)} {comparison} {_over(unit, units, settings)}"


def _slide_calls(slide_ids, units, settings):
    """'S1 eligible (25.0%), S2 not_eligible (0.2%), S3 inadequate (54 cells)'."""
    parts = []
    for sid in slide_ids:
        u = units[sid]
        if u.call == "inadequate":
            detail = f"{u.stats['n_cells']:,} cells"
        else:
            detail = _fmt(u.stats[settings.metric], settings)
        parts.append(f"{sid} {u.call} ({detail})")
    return ", ".join(parts)


# ---------------------------------------------------------------- patient rules


@dataclass(frozen=True)
class _Decision:
    """A patient rule's call, its reason, the unit whose scores are reported, review notes."""

    call: str
    reason: str
    unit: _Unit
    notes: list = field(default_factory=list)


def _collected_date(value, slide_id):
    """The slide's collection date (an ISO date or date-time, as the sheet check accepts), or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip()).date()
    except ValueError:
        raise ValueError(f"slide {slide_id}: collected {value!r} is not an ISO date (YYYY-MM-DD)") from None


def _most_recent(slide_ids, collected):
    """(slide id, date or None, note): the latest-collected slide; the note flags ties/missing dates."""
    dates = {sid: _collected_date(collected[sid], sid) for sid in slide_ids}
    dated = [sid for sid in slide_ids if dates[sid] is not None]
    if not dated:
        note = f"no collection dates ({', '.join(slide_ids)}), used the last in the sheet"
        return slide_ids[-1], None, note if len(slide_ids) > 1 else ""
    latest = max(dates[sid] for sid in dated)
    tied = [sid for sid in dated if dates[sid] == latest]
    undated = [sid for sid in slide_ids if dates[sid] is None]
    notes = []
    if len(tied) > 1:
        notes.append(f"{', '.join(tied)} share the latest collection date {latest}, used {tied[-1]}")
    if undated:
        notes.append(f"collection date missing for {', '.join(undated)}")
    return tied[-1], latest, "; ".join(notes)


def _decide(used, collected, counts, variant, settings):
    """Apply the patient rule to the usable slides under one scoring variant."""
    units = {sid: _score_unit((sid,), counts, variant, settings) for sid in used}
    pooled = units[used[0]] if len(used) == 1 else _score_unit(tuple(used), counts, variant, settings)
    adequate = [sid for sid in used if units[sid].call != "inadequate"]
    calls = {units[sid].call for sid in adequate}
    slide_calls = _slide_calls(used, units, settings)
    if settings.rule == "pooled":
        if set(_DEFINITE) <= calls:
            reason = f"slides disagree: {slide_calls}; pooled {_describe(pooled, units, settings)}"
            return _Decision("indeterminate", reason, pooled)
        return _Decision(pooled.call, _describe(pooled, units, settings), pooled)
    if not adequate:
        reason = f"no slide has at least {settings.min_cells:,} {settings.cells_noun} ({slide_calls})"
        return _Decision("inadequate", reason, pooled)
    if settings.rule == "most_recent":
        sid, when, note = _most_recent(adequate, collected)
        unit = units[sid]
        reason = f"most recent slide {sid} (collected {when or 'date unknown'}): " + _describe(unit, units, settings)
        if note:
            return _Decision(unit.call, f"{reason}; {note}", unit, [f"most recent slide uncertain: {note}"])
        return _Decision(unit.call, reason, unit)
    if settings.rule == "any_slide":
        some, every = "eligible", "not_eligible"  # eligible if some slide is, not_eligible if every slide is
    else:  # all_slides: the reverse
        some, every = "not_eligible", "eligible"
    call = some if some in calls else every if calls == {every} else "indeterminate"
    pooled_text = f"{_measurement(pooled, settings)} {_over(pooled, units, settings)}"
    return _Decision(call, f"{settings.rule} rule: {slide_calls}; pooled {pooled_text}", pooled)


def _call_changes(call, used, collected, counts, settings):
    """[(variant label, new call)] for each variant present under which a definite call changes."""
    if call not in _DEFINITE:
        return []
    present = {variant for variant, _, sid in counts if sid in used}
    changes = []
    for variant in (v for v in VARIANTS if v in present):
        new_call = _decide(used, collected, counts, variant, settings).call
        if new_call != call:
            changes.append((_variant_label(variant, settings), new_call))
    return changes


def _tumour_source(rows):
    """Least reliable tumour source of the slides: a ``tumour_source`` column, else roi / all_cells."""
    sources = ["roi" if has_roi else "all_cells" for has_roi in rows["has_roi"].astype(bool)]
    if "tumour_source" in rows.columns:
        given = [s if isinstance(s, str) and s else None for s in rows["tumour_source"]]
        sources = [g or s for g, s in zip(given, sources)]
    unknown = sorted(set(sources) - set(TUMOUR_SOURCES))
    if unknown:
        raise ValueError(f"slides.tumour_source has unknown values {unknown}; allowed {TUMOUR_SOURCES}")
    return max(sources, key=TUMOUR_SOURCES.index)


def _patient_row(rows, counts, hists, settings):
    """The eligibility row of one patient's slides (except the constant trailing columns)."""
    used = [sid for sid, status in zip(rows["slide_id"], rows["qc_status"]) if status != "failed"]
    messages = dict(zip(rows["slide_id"], rows["qc_message"]))
    statuses = dict(zip(rows["slide_id"], rows["qc_status"]))
    failed = [sid for sid in rows["slide_id"] if sid not in used]
    source = _tumour_source(rows[rows["slide_id"].isin(used)] if used else rows)
    if source == "all_cells":
        settings = replace(settings, cells_noun="cells")
    review = []
    if source not in _DELINEATED:
        review.append(f"tumour not delineated ({source})")
    if not settings.calibrated:
        review.append("thresholds not calibrated")
    # Every slide that is not QC ok needs a look, used or excluded (DESIGN 5: review unless QC is ok).
    review += [f"QC {statuses[sid]} {sid}: {messages[sid]}" for sid in rows["slide_id"] if statuses[sid] != "ok"]
    review += _pattern_notes(rows[rows["slide_id"].isin(used)])

    if not used:
        unit = _score_unit((), counts, NOMINAL, settings)
        call = "inadequate"
        reason = "no usable slide: " + ", ".join(f"{sid} QC failed ({messages[sid]})" for sid in failed)
    else:
        collected = dict(zip(rows["slide_id"], rows["collected"]))
        decision = _decide(used, collected, counts, NOMINAL, settings)
        unit, call, reason = decision.unit, decision.call, decision.reason
        review += decision.notes
        changes = _call_changes(call, used, collected, counts, settings)
        if changes:
            flips = "; ".join(f"call changes to {new} with {label}" for label, new in changes)
            reason = f"{flips}; nominal call {call}: {reason}"
            review += [f"call changes with {label}" for label, _ in changes]
            call = "indeterminate"
        elif call == "indeterminate":
            review.append("call indeterminate")
        reason += "".join(f"; excluded {sid} (QC failed: {messages[sid]})" for sid in failed)
    if call == "not_eligible":
        review += _control_notes(rows[rows["slide_id"].isin(unit.slide_ids)], settings.control)
    if source in _NOT_DELINEATED_TEXT:
        reason += f"; {_NOT_DELINEATED_TEXT[source]}"
    return {
        "call": call,
        "reason": reason,
        "review_required": bool(review),
        "review_reasons": "; ".join(review),
        "tumour_source": source,
        "n_slides": len(unit.slide_ids),
        **_score_columns(unit, counts, hists, settings),
    }


def _pattern_notes(rows):
    """Review notes for slides whose positive cells, or whose DAB-stained cells, are mostly
    stained in the nucleus."""
    notes = []
    for row in rows.itertuples():
        for count, share, what in (("n_positive", "pct_positive_nuclear", "positive"),
                                   ("n_stained", "pct_stained_nuclear", "DAB-stained")):
            n, pct = getattr(row, count, None), getattr(row, share, None)
            if n is not None and pct is not None and n >= PATTERN_MIN_POSITIVE and pct > NUCLEAR_PATTERN_PCT:
                notes.append(f"staining predominantly nuclear ({row.slide_id}: {pct:.0f}% of {int(n)} {what} cells)")
                break
    return notes


def _control_notes(rows, control):
    """Review notes for slides behind a not_eligible call whose immune cells, enough of them to
    read, show no CXCR4: lymphocytes express it, so the stain itself may have failed."""
    if control is None:
        return []
    notes = []
    for row in rows.itertuples():
        n, pct = getattr(row, "n_immune_cells", None), getattr(row, "pct_immune_positive", None)
        if n is not None and pct is not None and n >= control["min_immune_cells"] and pct < control["min_pct_positive"]:
            notes.append(f"internal control negative: stain may have failed ({row.slide_id}: {pct:.1f}% of "
                         f"{int(n)} immune cells positive)")
    return notes


def _frame(rows, columns):
    """DataFrame of score rows with stable dtypes (counts int64, Allred/IRS nullable Int64)."""
    frame = pd.DataFrame(rows, columns=list(columns))
    dtypes = {c: "float64" for c in SCORE_COLUMNS} | {"n_cells": "int64", "allred": "Int64", "irs": "Int64"}
    return frame.astype(dtypes)


def _hists(slides):
    return {sid: np.asarray(h, dtype=np.int64) for sid, h in zip(slides["slide_id"], slides["pixel_hist"])}


def slide_scores(slides, blocks, config):
    """Scores of each slide from its nominal class counts.

    Parameters
    ----------
    slides : pandas.DataFrame
        One row per slide with ``slide_id`` and ``pixel_hist`` ((2, 800) int64 pixel histogram).
    blocks : pandas.DataFrame
        Class counts per block: ``slide_id, variant, measure, block_id, n0, n1, n2, n3``; rows of
        the same block are summed.
    config : dict
        The effective config (keys of config/config.yaml).

    Returns
    -------
    scores : pandas.DataFrame
        One row per slide, in the order of ``slides``, columns ``SLIDE_SCORE_COLUMNS``. A slide
        without cells has ``n_cells`` 0 and NaN scores.

    Raises
    ------
    ValueError
        If a column is missing or a config value is invalid.

    Notes
    -----
    Slides are scored whatever their ``qc_status``; :func:`patient_eligibility` excludes failed
    ones. Per-compartment H-scores come from the ``class_membrane``, ``class_cytoplasm`` and
    ``class_nucleus`` measures, the pixel H-score from ``pixel_hist`` with ``pixel_thresholds``.
    """
    settings = _settings(config)
    _require_columns(slides, "slides", ["slide_id", "pixel_hist"])
    counts, hists = _index_blocks(blocks), _hists(slides)
    units = (_score_unit((sid,), counts, NOMINAL, settings) for sid in slides["slide_id"])
    rows = [{"slide_id": u.slide_ids[0], **_score_columns(u, counts, hists, settings)} for u in units]
    return _frame(rows, SLIDE_SCORE_COLUMNS)


def patient_eligibility(slides, blocks, config, *, version):
    """Per-patient eligibility call with its reason, review flags and scores.

    Parameters
    ----------
    slides : pandas.DataFrame
        One row per slide: ``slide_id, patient_id, qc_status ('ok'|'warning'|'failed'),
        qc_message, collected ('YYYY-MM-DD' or ''), has_roi, pixel_hist``; optional
        ``tumour_source`` (roi | classifier | morphology | all_cells) overrides ``has_roi``.
    blocks : pandas.DataFrame
        Class counts per block and scoring variant (see :func:`slide_scores`).
    config : dict
        The effective config: ``eligibility`` (metric, cutoff, min_cells, threshold_tolerance),
        ``patient_rule``, ``intervals``, ``thresholds``, ``pixel_thresholds``, ``class_rule``,
        ``compartments``, ``calibrated``, ``internal_control``. Optional slide columns
        ``n_immune_cells`` and ``pct_immune_positive`` feed the internal control.
    version : str
        Package version written to ``cxcr4score_version``.

    Returns
    -------
    eligibility : pandas.DataFrame
        One row per patient in order of first appearance in ``slides``, columns
        ``ELIGIBILITY_COLUMNS``.

    Raises
    ------
    ValueError
        If the metric, patient rule, a column, a tumour source or a collection date is invalid.

    Notes
    -----
    Slides with ``qc_status`` 'failed' are excluded; ``n_slides`` counts the slides whose scores
    are reported. A unit of slides (pooled blocks, strata = slide) is ``inadequate`` below
    ``min_cells`` tumour cells, ``eligible`` if the metric's interval is at or above the cutoff,
    ``not_eligible`` if it is below, else ``indeterminate``. Patient rules:

    - pooled: the pooled call, but ``indeterminate`` ("slides disagree: ...") when one adequate
      slide is eligible and another not_eligible;
    - any_slide: eligible if any adequate slide is, not_eligible if all are, else indeterminate;
    - all_slides: eligible if all adequate slides are, not_eligible if any is, else indeterminate;
    - most_recent: the adequate slide with the latest ``collected`` date (its scores are
      reported); ties go to the later slide in the sheet, missing dates are named in the reason
      and flagged for review.

    Scores are pooled over the usable slides except under most_recent; any_slide / all_slides /
    most_recent are ``inadequate`` when no single slide is adequate. A definite call is re-made
    with each variant present in ``blocks`` (thresholds -/+ tolerance, alternative I0/stain;
    slides without a variant use their nominal counts); any change makes it ``indeterminate``
    and the reason names the variant. ``review_required`` is False only when tumour came from an
    ROI or a classifier, thresholds are calibrated, every used slide has QC 'ok', and the call is
    stable and not indeterminate; ``review_reasons`` lists what failed. A ``not_eligible``
    call is also flagged when a slide whose scores it reports has at least
    ``internal_control.min_immune_cells`` immune cells and fewer than ``min_pct_positive`` %
    of them positive (internal control negative: the stain may have failed).
    """
    settings = _settings(config)
    required = ["slide_id", "patient_id", "qc_status", "qc_message", "collected", "has_roi", "pixel_hist"]
    _require_columns(slides, "slides", required)
    counts, hists = _index_blocks(blocks), _hists(slides)
    rows = [
        {"patient_id": patient_id, **_patient_row(group, counts, hists, settings)}
        for patient_id, group in slides.groupby("patient_id", sort=False)
    ]
    frame = _frame(rows, ELIGIBILITY_COLUMNS)
    frame["metric"] = settings.metric
    frame["cutoff"] = settings.cutoff
    frame["thresholds"] = settings.thresholds_label
    frame["compartments"] = settings.compartments_label
    frame["cxcr4score_version"] = version
    return frame.astype({"review_required": bool, "n_slides": "int64"})
