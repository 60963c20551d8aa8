"""Tests of cxcr4score.eligibility: the per-patient call, its rules, stability and reason text.

References: DESIGN.md section 4 (eligibility.csv / slides.csv columns and reason wording) and
section 5 ("Call", "patient rule", "intervals", review rules). Block counts are chosen so each
interval is hand-checkable: identical blocks give a zero-width bootstrap interval at the point
estimate; fewer than 10 blocks use the Wilson interval on n / 5.
"""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cxcr4score.eligibility import ELIGIBILITY_COLUMNS, SLIDE_SCORE_COLUMNS, patient_eligibility, slide_scores

CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
MEASURES = ("class", "class_membrane", "class_cytoplasm", "class_nucleus")

POSITIVE = [80, 15, 4, 1]  # 20% positive, H 26 per block
NEGATIVE = [100, 0, 0, 0]


@pytest.fixture
def config():
    """The shipped defaults (config/config.yaml), as the workflow passes them."""
    return copy.deepcopy(yaml.safe_load(CONFIG_PATH.read_text()))


def blocks_of(slide_id, block, n_blocks=20, *, variant="nominal", measures=MEASURES):
    """Rows of ``n_blocks`` identical blocks of one slide and variant."""
    return [
        {"slide_id": slide_id, "variant": variant, "measure": measure, "block_id": b,
         **dict(zip(("n0", "n1", "n2", "n3"), block))}
        for measure in measures
        for b in range(n_blocks)
    ]  # fmt: skip


def make_blocks(*specs):
    """Blocks table from (slide_id, block[, n_blocks]) nominal specs plus stable threshold variants."""
    rows = []
    for slide_id, block, *n in specs:
        rows += blocks_of(slide_id, block, *n)
        for variant in ("thresholds_minus", "thresholds_plus"):
            rows += blocks_of(slide_id, block, *n, variant=variant, measures=("class",))
    columns = ["slide_id", "variant", "measure", "block_id", "n0", "n1", "n2", "n3"]
    return pd.DataFrame(rows, columns=columns).astype({c: "int64" for c in columns[3:]})


def make_slides(*rows):
    """Slides table from dicts with slide_id and patient_id (others default: ok, ROI, no date)."""
    defaults = {
        "path": "x.tif", "mpp": 0.5, "tissue_mm2": 10.0, "i0": "", "stain_vectors": "", "stain_source": "default",
        "qc_status": "ok", "qc_message": "", "collected": "", "has_roi": True,
        "pixel_hist": np.zeros((2, 800), np.int64),
    }  # fmt: skip
    return pd.DataFrame([defaults | row for row in rows])


def one(slides, blocks, config, **config_changes):
    """The single patient row for a config with some keys replaced."""
    config.update(config_changes)
    out = patient_eligibility(slides, blocks, config, version="9.9.9")
    assert len(out) == 1
    return out.iloc[0]


S1 = {"slide_id": "S1", "patient_id": "P1"}
S2 = {"slide_id": "S2", "patient_id": "P1"}


# ---------------------------------------------------------------- columns and per-slide scores


def test_columns_exact_order(config):
    """DESIGN 4: eligibility.csv columns in this exact order."""
    expected = (
        "patient_id, call, reason, review_required, review_reasons, tumour_source, n_slides, n_cells, "
        "pct_0, pct_1, pct_2, pct_3, pct_positive, pct_positive_ci_low, pct_positive_ci_high, h_score, "
        "h_score_ci_low, h_score_ci_high, h_score_membrane, h_score_cytoplasm, h_score_nucleus, "
        "h_score_pixel, allred, irs, metric, cutoff, thresholds, compartments, cxcr4score_version"
    ).split(", ")
    out = patient_eligibility(make_slides(S1), make_blocks(("S1", POSITIVE)), config, version="9.9.9")
    assert list(out.columns) == expected == list(ELIGIBILITY_COLUMNS)


def test_constant_columns(config):
    """metric, cutoff, thresholds ('0.2/0.4/0.6'), compartments ('membrane,cytoplasm') and version."""
    row = one(make_slides(S1), make_blocks(("S1", POSITIVE)), config)
    assert (row["metric"], row["cutoff"], row["thresholds"]) == ("pct_positive", 1.0, "0.2/0.4/0.6")
    assert (row["compartments"], row["cxcr4score_version"]) == ("membrane,cytoplasm", "9.9.9")
    changes = {"class_rule": "membrane", "thresholds": [0.25, 0.5, 0.75]}
    row = one(make_slides(S1), make_blocks(("S1", POSITIVE)), config, **changes)
    assert (row["compartments"], row["thresholds"]) == ("membrane", "0.25/0.5/0.75")


def test_slide_scores_hand_worked(config):
    """Per-slide scores from nominal counts: 20 blocks of 80/15/4/1 -> 2000 cells, 20% positive, H 26.

    Allred: PS 3 ([10, 33.3)%) + IS round(26/20 = 1.3) = 1 -> 4; IRS: PP 2 x SI 1 = 2.
    Compartment H-scores from their own measures; pixel H from the histogram (Ram 2021):
    10 counted pixels at 1+ and 10 at 3+ -> H 200.
    """
    blocks = make_blocks(("S1", POSITIVE), ("S2", NEGATIVE, 3))
    membrane = blocks["measure"] == "class_membrane"
    blocks.loc[membrane & (blocks["slide_id"] == "S1"), ["n0", "n1", "n2", "n3"]] = [0, 0, 100, 0]
    hist = np.zeros((2, 800), np.int64)
    hist[0, [250, 400]] = 10  # lower edges 0.25 (1+) and 1.0 (3+)
    slides = make_slides(S1 | {"pixel_hist": hist}, S2, {"slide_id": "S3", "patient_id": "P2"})
    out = slide_scores(slides, blocks, config)
    assert list(out.columns) == list(SLIDE_SCORE_COLUMNS)
    s1, s2, s3 = (out.iloc[i] for i in range(3))
    assert (s1["n_cells"], s1["pct_positive"], s1["h_score"]) == (2000, 20.0, 26.0)
    assert (s1["pct_1"], s1["pct_2"], s1["pct_3"]) == (15.0, 4.0, 1.0)
    # identical blocks: the bootstrap is degenerate, so Wilson on n / 5 = 400 (hand-worked 16.37-24.20)
    assert (s1["pct_positive_ci_low"], s1["pct_positive_ci_high"]) == pytest.approx((16.37, 24.20), abs=0.01)
    assert (s1["h_score_membrane"], s1["h_score_cytoplasm"], s1["h_score_nucleus"]) == (200.0, 26.0, 26.0)
    assert s1["h_score_pixel"] == 200.0
    assert (s1["allred"], s1["irs"]) == (4, 2)
    assert (s2["n_cells"], s2["pct_positive"], s2["allred"], s2["irs"]) == (300, 0.0, 0, 0)
    assert s2["pct_positive_ci_high"] > 0  # 3 blocks: Wilson interval
    assert s3["n_cells"] == 0 and np.isnan(s3["pct_positive"]) and pd.isna(s3["allred"])


def test_block_rows_are_summed(config):
    """Rows of one block (e.g. from two chunks) are one block: summed before scoring."""
    blocks = make_blocks(("S1", [40, 10, 0, 0]))
    doubled = pd.concat([blocks, blocks], ignore_index=True)
    single = slide_scores(make_slides(S1), make_blocks(("S1", [80, 20, 0, 0])), config)
    pd.testing.assert_frame_equal(slide_scores(make_slides(S1), doubled, config), single)


# ---------------------------------------------------------------- per-unit calls


def test_eligible_reason_and_review(config):
    """DESIGN 5: eligible when the whole interval >= cutoff; reason lists value, CI, cells and per-slide values."""
    row = one(make_slides(S1, S2), make_blocks(("S1", POSITIVE), ("S2", [90, 10, 0, 0])), config)
    assert row["call"] == "eligible"
    assert row["reason"] == (
        "pct_positive 15.0% (95% CI 12.7-17.6) >= cutoff 1% over 4,000 tumour cells in 2 slides (S1 20.0%, S2 10.0%)"
    )
    assert (row["n_slides"], row["n_cells"], row["tumour_source"]) == (2, 4000, "roi")
    assert row["review_required"] and row["review_reasons"] == "thresholds not calibrated"


def test_no_review_when_everything_holds(config):
    """review_required is False with ROI, calibrated thresholds, QC ok and a stable definite call."""
    row = one(make_slides(S1), make_blocks(("S1", POSITIVE)), config, calibrated=True)
    assert (row["call"], row["review_required"], row["review_reasons"]) == ("eligible", False, "")


def test_not_eligible(config):
    """not_eligible when the whole interval is below the cutoff."""
    row = one(make_slides(S1), make_blocks(("S1", NEGATIVE)), config)
    assert row["call"] == "not_eligible"
    # Wilson on n / 5 = 400: upper 3.84 / 403.84 = 0.95%, written with two decimals so it does not read "1.0"
    assert row["reason"] == "pct_positive 0.0% (95% CI 0.0-0.95) < cutoff 1% over 2,000 tumour cells in 1 slide (S1 0.0%)"


def test_indeterminate_when_ci_spans_cutoff(config):
    """Wilson on n/5 (5 blocks < 10): 5 of 600 positive -> 0.83% with CI about 0.15-4.6%, spanning 1%."""
    row = one(make_slides(S1), make_blocks(("S1", [119, 1, 0, 0], 5)), config)
    assert row["call"] == "indeterminate"
    assert row["pct_positive_ci_low"] < 1 < row["pct_positive_ci_high"]
    assert "CI spans cutoff 1%" in row["reason"]
    assert "call indeterminate" in row["review_reasons"]


def test_inadequate_by_cell_count(config):
    """Fewer than min_cells tumour cells -> inadequate, reason gives the count and the requirement."""
    row = one(make_slides(S1), make_blocks(("S1", [50, 4, 0, 0], 1)), config)
    assert row["call"] == "inadequate"
    assert row["reason"].startswith("only 54 tumour cells (< 100 required) in 1 slide (S1 54 cells)")


def test_inadequate_when_all_slides_fail_qc(config):
    """QC failed on every slide -> inadequate, no slide used, failed slides listed with their message."""
    slides = make_slides(S1 | {"qc_status": "failed", "qc_message": "cannot read file"})
    row = one(slides, make_blocks(), config)
    assert row["call"] == "inadequate" and row["n_slides"] == 0 and row["n_cells"] == 0
    assert row["reason"] == "no usable slide: S1 QC failed (cannot read file)"
    assert np.isnan(row["pct_positive"])


def test_failed_slide_excluded_when_others_suffice(config):
    """DESIGN 4 on_bad_slide skip: the failed slide is excluded and named; the other slide decides."""
    slides = make_slides(S1 | {"qc_status": "failed", "qc_message": "cannot read file"}, S2)
    row = one(slides, make_blocks(("S1", NEGATIVE), ("S2", POSITIVE)), config)
    assert (row["call"], row["n_slides"], row["n_cells"]) == ("eligible", 1, 2000)
    assert row["reason"].endswith("(S2 20.0%); excluded S1 (QC failed: cannot read file)")


def test_h_score_metric_wording(config):
    """metric h_score: 'h_score 26 (95% CI 20-32) < cutoff 100 ...' (26 +- 1.96 * 57.65 / sqrt(400))."""
    config["eligibility"] |= {"metric": "h_score", "cutoff": 100}
    row = one(make_slides(S1), make_blocks(("S1", POSITIVE)), config)
    assert row["call"] == "not_eligible"
    assert row["reason"] == "h_score 26 (95% CI 20-32) < cutoff 100 over 2,000 tumour cells in 1 slide (S1 26)"
    assert row["metric"] == "h_score" and row["cutoff"] == 100.0


def test_min_cells_from_config(config):
    """min_cells is read from the config: 2000 cells are inadequate when 5000 are required."""
    config["eligibility"]["min_cells"] = 5000
    row = one(make_slides(S1), make_blocks(("S1", POSITIVE)), config)
    assert row["call"] == "inadequate" and "(< 5,000 required)" in row["reason"]


# ---------------------------------------------------------------- patient rules


DISAGREE = (("S1", POSITIVE), ("S2", NEGATIVE))


def test_pooled_slides_disagree(config):
    """DESIGN 5 patient rule pooled: one slide eligible, one not_eligible -> indeterminate 'slides disagree'."""
    row = one(make_slides(S1, S2), make_blocks(*DISAGREE), config)
    assert row["call"] == "indeterminate"
    assert row["reason"].startswith(
        "slides disagree: S1 eligible (20.0%), S2 not_eligible (0.0%); pooled pct_positive 10.0%"
    )
    assert row["n_slides"] == 2 and row["pct_positive"] == 10.0


def test_pooled_ignores_inadequate_slide_in_disagreement(config):
    """Only adequate slides can disagree: a 50-cell negative slide does not override the pooled call."""
    row = one(make_slides(S1, S2), make_blocks(("S1", POSITIVE), ("S2", [50, 0, 0, 0], 1)), config)
    assert row["call"] == "eligible" and row["n_cells"] == 2050


def test_any_slide(config):
    """any_slide: eligible if any adequate slide is; scores pooled."""
    row = one(make_slides(S1, S2), make_blocks(*DISAGREE), config, patient_rule="any_slide")
    assert row["call"] == "eligible" and row["n_slides"] == 2 and row["pct_positive"] == 10.0
    assert row["reason"].startswith("any_slide rule: S1 eligible (20.0%), S2 not_eligible (0.0%); pooled")


def test_any_slide_indeterminate_and_not_eligible(config):
    """any_slide: not_eligible only if all adequate slides are; indeterminate + not_eligible -> indeterminate."""
    both_negative = make_blocks(("S1", NEGATIVE), ("S2", NEGATIVE))
    assert one(make_slides(S1, S2), both_negative, config, patient_rule="any_slide")["call"] == "not_eligible"
    spans = make_blocks(("S1", [198, 2, 0, 0], 3), ("S2", NEGATIVE))
    assert one(make_slides(S1, S2), spans, config, patient_rule="any_slide")["call"] == "indeterminate"


def test_all_slides(config):
    """all_slides: not_eligible if any adequate slide is; eligible only if every adequate slide is."""
    row = one(make_slides(S1, S2), make_blocks(*DISAGREE), config, patient_rule="all_slides")
    assert row["call"] == "not_eligible"
    both = make_blocks(("S1", POSITIVE), ("S2", POSITIVE), ("S3", [50, 0, 0, 0], 1))
    slides = make_slides(S1, S2, {"slide_id": "S3", "patient_id": "P1"})
    row = one(slides, both, config, patient_rule="all_slides")
    assert row["call"] == "eligible"  # S3 is inadequate and ignored
    assert "S3 inadequate (50 cells)" in row["reason"]


def test_per_slide_rules_need_an_adequate_slide(config):
    """any_slide / all_slides / most_recent: two 60-cell slides (120 pooled) -> no adequate slide -> inadequate."""
    blocks = make_blocks(("S1", [54, 6, 0, 0], 1), ("S2", [54, 6, 0, 0], 1))
    for rule in ("any_slide", "all_slides", "most_recent"):
        row = one(make_slides(S1, S2), blocks, config, patient_rule=rule)
        assert row["call"] == "inadequate"
        assert row["reason"].startswith("no slide has at least 100 tumour cells (S1 inadequate (60 cells)")


def test_most_recent(config):
    """most_recent: the adequate slide with the latest collected date decides; its scores are reported."""
    slides = make_slides(S1 | {"collected": "2021-06-01"}, S2 | {"collected": "2020-01-15"})
    row = one(slides, make_blocks(*DISAGREE), config, patient_rule="most_recent", calibrated=True)
    assert (row["call"], row["n_slides"], row["pct_positive"]) == ("eligible", 1, 20.0)
    assert row["reason"].startswith("most recent slide S1 (collected 2021-06-01): pct_positive 20.0%")
    assert not row["review_required"]


def test_most_recent_tie_and_missing_dates(config):
    """most_recent: a tie on the latest date or a missing date is said in the reason and flagged for review."""
    slides = make_slides(S1 | {"collected": "2021-06-01"}, S2 | {"collected": "2021-06-01"})
    row = one(slides, make_blocks(*DISAGREE), config, patient_rule="most_recent", calibrated=True)
    assert row["call"] == "not_eligible"  # the tie goes to the later slide in the sheet
    assert "S1, S2 share the latest collection date 2021-06-01, used S2" in row["reason"]
    assert row["review_required"] and "most recent slide uncertain" in row["review_reasons"]
    slides = make_slides(S1 | {"collected": "2021-06-01"}, S2)
    row = one(slides, make_blocks(*DISAGREE), config, patient_rule="most_recent")
    assert row["call"] == "eligible" and "collection date missing for S2" in row["review_reasons"]


def test_most_recent_rejects_bad_date(config):
    """Invalid input: a collected value that is not YYYY-MM-DD is named with its slide."""
    slides = make_slides(S1 | {"collected": "01/06/2021"}, S2)
    with pytest.raises(ValueError, match="S1.*01/06/2021"):
        one(slides, make_blocks(*DISAGREE), config, patient_rule="most_recent")


# ---------------------------------------------------------------- stability under variants


def test_threshold_variant_flips_call(config):
    """DESIGN 5: a definite call that changes with thresholds +0.05 becomes indeterminate naming the variant."""
    blocks = make_blocks(("S1", POSITIVE))
    plus = (blocks["variant"] == "thresholds_plus")
    blocks.loc[plus, ["n0", "n1", "n2", "n3"]] = NEGATIVE
    row = one(make_slides(S1), blocks, config, calibrated=True)
    assert row["call"] == "indeterminate"
    assert row["reason"].startswith(
        "call changes to not_eligible with thresholds +0.05; nominal call eligible: pct_positive 20.0%"
    )
    assert row["review_required"] and row["review_reasons"] == "call changes with thresholds +0.05"
    assert row["pct_positive"] == 20.0  # scores stay nominal


def test_alt_i0_variant_flips_call(config):
    """The alternative I0/stain variant is re-evaluated when present; a change makes the call indeterminate."""
    alt = pd.DataFrame(blocks_of("S1", POSITIVE, variant="alt_i0", measures=("class",)))
    blocks = pd.concat([make_blocks(("S1", NEGATIVE)), alt], ignore_index=True)
    row = one(make_slides(S1), blocks, config)
    assert row["call"] == "indeterminate"
    assert "call changes to eligible with the alternative I0/stain choice" in row["reason"]
    assert "call changes with the alternative I0/stain choice" in row["review_reasons"]


def test_typing_variant_flips_call(config):
    """Issue 21: the call is re-made over the cells scored with the typing limits shifted;
    positive cells that only looser typing counts as tumour make a 0% call indeterminate."""
    more = pd.DataFrame(blocks_of("S1", POSITIVE, variant="typing_more", measures=("class",)))
    blocks = pd.concat([make_blocks(("S1", NEGATIVE)), more], ignore_index=True)
    row = one(make_slides(S1), blocks, config)
    assert row["call"] == "indeterminate"
    assert "call changes to eligible with tumour typing limits shifted 10% towards more tumour cells" in row["reason"]


def test_segmentation_variant_flips_call(config):
    """Issue 21 item 4: a call that changes when nuclei are segmented at a higher threshold is
    indeterminate, naming the segmentation variant."""
    fewer = pd.DataFrame(blocks_of("S1", NEGATIVE, variant="nuclei_fewer", measures=("class",)))
    blocks = pd.concat([make_blocks(("S1", POSITIVE)), fewer], ignore_index=True)
    row = one(make_slides(S1), blocks, config, calibrated=True)
    assert row["call"] == "indeterminate"
    assert row["review_reasons"] == "call changes with the nucleus threshold 40% higher (fewer nuclei)"


def test_alt_i0_absent_for_a_slide_uses_nominal(config):
    """alt_i0 missing for a slide (equal to nominal): that slide's nominal counts stand in; the call is stable."""
    blocks = pd.concat(
        [make_blocks(("S1", POSITIVE), ("S2", POSITIVE)),
         pd.DataFrame(blocks_of("S1", [85, 15, 0, 0], variant="alt_i0", measures=("class",)))],
        ignore_index=True,
    )  # fmt: skip
    row = one(make_slides(S1, S2), blocks, config)
    assert row["call"] == "eligible" and "changes" not in row["reason"]


def test_variant_disagreement_counts_as_change(config):
    """Under a variant the whole rule is re-made: slides that disagree there make the call change."""
    blocks = make_blocks(("S1", POSITIVE), ("S2", POSITIVE))
    minus_s2 = (blocks["variant"] == "thresholds_minus") & (blocks["slide_id"] == "S2")
    blocks.loc[minus_s2, ["n0", "n1", "n2", "n3"]] = NEGATIVE
    row = one(make_slides(S1, S2), blocks, config)
    assert row["call"] == "indeterminate"
    assert row["reason"].startswith("call changes to indeterminate with thresholds -0.05")


# ---------------------------------------------------------------- tumour source, QC review, order


def test_all_cells_source(config):
    """No ROI: tumour_source all_cells; the reason says tumour not delineated; review names it."""
    slides = make_slides(S1 | {"has_roi": False}, S2)
    row = one(slides, make_blocks(("S1", POSITIVE), ("S2", POSITIVE)), config, calibrated=True)
    assert row["tumour_source"] == "all_cells"
    assert row["reason"].endswith("; tumour not delineated, all cells scored")
    assert " over 4,000 cells in 2 slides" in row["reason"]  # not "tumour cells": none were delineated
    assert row["review_reasons"] == "tumour not delineated (all_cells)"


def test_tumour_source_column_overrides(config):
    """A per-slide tumour_source column (classifier) counts as delineated; morphology does not."""
    slides = make_slides(S1 | {"has_roi": False, "tumour_source": "classifier"})
    row = one(slides, make_blocks(("S1", POSITIVE)), config, calibrated=True)
    assert (row["tumour_source"], row["review_required"]) == ("classifier", False)
    slides = make_slides(S1 | {"tumour_source": "morphology"})
    row = one(slides, make_blocks(("S1", POSITIVE)), config, calibrated=True)
    assert row["review_reasons"] == "tumour not delineated (morphology)"
    assert "tumour not delineated" in row["reason"]


def test_qc_warning_review_reason(config):
    """A used slide with a QC warning needs review; the reason gives the slide and message, in order."""
    slides = make_slides(S1 | {"has_roi": False}, S2 | {"qc_status": "warning", "qc_message": "no glass: I0 255 used"})
    row = one(slides, make_blocks(("S1", POSITIVE), ("S2", POSITIVE)), config)
    assert row["review_reasons"] == (
        "tumour not delineated (all_cells); thresholds not calibrated; QC warning S2: no glass: I0 255 used"
    )


def test_patients_in_order_of_first_appearance(config):
    """One row per patient, in order of first appearance; patient ids stay strings ('007')."""
    slides = make_slides(
        {"slide_id": "A", "patient_id": "P9"},
        {"slide_id": "B", "patient_id": "007"},
        {"slide_id": "C", "patient_id": "P9"},
    )
    blocks = make_blocks(("A", POSITIVE), ("B", NEGATIVE), ("C", POSITIVE))
    out = patient_eligibility(slides, blocks, config, version="1")
    assert out["patient_id"].tolist() == ["P9", "007"]
    assert out["call"].tolist() == ["eligible", "not_eligible"]
    assert out["n_slides"].tolist() == [2, 1]


@pytest.mark.parametrize(
    ("changes", "bad"),
    [({"patient_rule": "majority"}, "majority"),
     ({"eligibility": {"metric": "allred", "cutoff": 3, "min_cells": 100, "threshold_tolerance": 0.05}}, "allred")],
)  # fmt: skip
def test_rejects_bad_config(config, changes, bad):
    """Invalid config values -> ValueError naming the value."""
    config.update(changes)
    with pytest.raises(ValueError, match=bad):
        patient_eligibility(make_slides(S1), make_blocks(("S1", POSITIVE)), config, version="1")


def test_rejects_unknown_variant(config):
    """Invalid blocks: an unknown variant is named."""
    blocks = make_blocks(("S1", POSITIVE)).assign(variant="thresholds_double")
    with pytest.raises(ValueError, match="thresholds_double"):
        slide_scores(make_slides(S1), blocks, config)


def test_predominantly_nuclear_staining_is_a_review_reason(config):
    """DESIGN 4-5 / issue 20: CXCR4 is read on membrane and cytoplasm; a slide whose positive
    cells are mostly stained in the nucleus is flagged, with the share and count, and only
    from 10 positive cells on."""
    nuclear = make_slides(S1 | {"n_positive": 40, "pct_positive_nuclear": 80.0})
    row = one(nuclear, make_blocks(("S1", POSITIVE)), config)
    assert row["review_required"] and "staining predominantly nuclear (S1: 80% of 40 positive cells)" in row["review_reasons"]
    for n, pct in ((40, 50.0), (9, 100.0)):
        row = one(make_slides(S1 | {"n_positive": n, "pct_positive_nuclear": pct}), make_blocks(("S1", POSITIVE)), config)
        assert "nuclear" not in row["review_reasons"]


def test_nuclear_stain_outside_the_scored_compartments_is_a_review_reason(config):
    """A nuclear stain whose brown nuclei the scored compartments leave out makes few positive
    cells, none of them nuclear by pattern, but most DAB-stained cells are nuclear (OS-2 Ki67 at
    the default compartments: 45% of 56 positive, most of the stained cells): flagged on the
    stained cells, from 10 of them on."""
    slides = make_slides(S1 | {"n_positive": 56, "pct_positive_nuclear": 45.0, "n_stained": 220,
                               "pct_stained_nuclear": 81.0})
    row = one(slides, make_blocks(("S1", POSITIVE)), config)
    assert "staining predominantly nuclear (S1: 81% of 220 DAB-stained cells)" in row["review_reasons"]
    for n, pct in ((220, 50.0), (9, 100.0)):
        slides = make_slides(S1 | {"n_positive": 56, "pct_positive_nuclear": 45.0, "n_stained": n,
                                   "pct_stained_nuclear": pct})
        assert "nuclear" not in one(slides, make_blocks(("S1", POSITIVE)), config)["review_reasons"]


def test_internal_control_negative_is_a_review_reason(config):
    """Lymphocytes express CXCR4: a not_eligible call on a slide with enough immune cells and
    none positive says the stain may have failed; positive lymphocytes, too few of them, an
    eligible call or the control turned off say nothing."""
    failed = S1 | {"n_immune_cells": 120, "pct_immune_positive": 0.0}
    row = one(make_slides(failed), make_blocks(("S1", NEGATIVE)), config, calibrated=True)
    assert row["call"] == "not_eligible" and row["review_required"]
    assert row["review_reasons"] == "internal control negative: stain may have failed (S1: 0.0% of 120 immune cells positive)"
    quiet = [
        (S1 | {"n_immune_cells": 120, "pct_immune_positive": 25.0}, NEGATIVE, True),
        (S1 | {"n_immune_cells": 49, "pct_immune_positive": 0.0}, NEGATIVE, True),
        (failed, POSITIVE, True),
        (failed, NEGATIVE, False),
    ]
    for slide, block, enabled in quiet:
        control = dict(config["internal_control"], enabled=enabled)
        row = one(make_slides(slide), make_blocks(("S1", block)), config, calibrated=True, internal_control=control)
        assert "internal control" not in row["review_reasons"]
