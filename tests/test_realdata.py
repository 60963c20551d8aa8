"""Real scans from ``../shared/data/wsi`` (crops of the OpenSlide test data): cross-checks.

OS-2 is one Ki67 section scanned by two scanners (Hamamatsu ``.ndpi`` at 0.23 um/px and
Olympus ``.vsi`` at 0.35 um/px), exported by QuPath, with QuPath's positive cell detection
results beside each crop. Ki67 is nuclear, so these are scored on the nucleus compartment,
every detected cell (nothing delineates tumour), with QuPath's DAB threshold 0.2: the row
"Detection threshold 0.2, DAB threshold 0.2". The H&E crops carry no DAB at all.

These are not CXCR4 slides and carry no pathologist scores: they check that the same tissue
gives the same answer on two scanners, that nucleus counts are of QuPath's order, and that a
slide without DAB is not called positive.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cxcr4score import config, pipeline

WSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "wsi"
#: Every file a test here reads (../shared/data/README.md lists them).
NEEDED = ("OS-2-ndpi.ome.tif", "OS-2-ndpi-results.tsv", "OS-2-vsi.ome.tif", "OS-2-vsi-results.tsv",
          "cmu_small_region.svs", "OS-1-detail.ome.tif")
if not WSI.is_dir():
    pytest.skip(f"{WSI} not present: real scans are not shipped with the project", allow_module_level=True)
_missing = [name for name in NEEDED if not (WSI / name).is_file()]
if _missing:
    pytest.skip(f"{WSI} lacks {', '.join(_missing)}: real scans are not shipped with the project",
                allow_module_level=True)
#: QuPath's row compared with (DESIGN section 5 DAB threshold; the issue's reference row).
QUPATH_ROW = {"Detection threshold": "0.2", "DAB threshold": "0.2"}


def _qupath(name):
    with open(WSI / f"{name}-results.tsv", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if all(row[key] == value for key, value in QUPATH_ROW.items()):
                return int(row["Num cells"]), float(row["Positive %"])
    raise AssertionError(f"no QuPath row {QUPATH_ROW} in {name}-results.tsv")


def _score(path, **overrides):
    settings = config.merge(config.default_config(), overrides)
    _, cells, _, summary = pipeline.score_slide(path, slide_id=path.stem, config=settings)
    scored = cells[cells["scored"]]
    return len(scored), 100.0 * float((scored["class"] >= 1).mean()), summary


@pytest.fixture(scope="module")
def ki67():
    nuclear = {"compartments": ["nucleus"], "tumour_cells": "all", "thresholds": [0.2, 0.4, 0.6]}
    return {name: _score(WSI / f"{name}.ome.tif", **nuclear) for name in ("OS-2-ndpi", "OS-2-vsi")}


def test_two_scanners_differ_as_qupath_finds(ki67):
    """Reference: QuPath's % positive on each scan (16.6% and 13.5%: its own gap is 3.0 points).

    The vsi scan's DAB is paler (99th percentile 0.5 OD against 1.3), so at one DAB threshold
    fewer nuclei are positive on it, for QuPath and for us alike; each scan is read within 1.5
    points of QuPath, and the gap within a point of QuPath's.
    """
    (_, ndpi, _), (_, vsi, _) = ki67["OS-2-ndpi"], ki67["OS-2-vsi"]
    (_, q_ndpi), (_, q_vsi) = _qupath("OS-2-ndpi"), _qupath("OS-2-vsi")
    assert abs(ndpi - q_ndpi) <= 1.5 and abs(vsi - q_vsi) <= 1.5, f"ndpi {ndpi:.1f}% vs {q_ndpi:.1f}%, vsi {vsi:.1f}% vs {q_vsi:.1f}%"
    assert abs(ndpi - vsi) <= abs(q_ndpi - q_vsi) + 1.0, f"ndpi {ndpi:.1f}% vs vsi {vsi:.1f}%"


def test_ki67_cell_count_within_30_percent_of_qupath(ki67):
    """Reference: QuPath positive cell detection, detection threshold 0.2 (the TSV beside the crop)."""
    n_qupath, _ = _qupath("OS-2-ndpi")
    n_ours, _, _ = ki67["OS-2-ndpi"]
    assert abs(n_ours - n_qupath) <= 0.3 * n_qupath, f"ndpi: {n_ours} cells vs QuPath {n_qupath}"


def test_pale_scan_count_with_the_per_slide_threshold(ki67):
    """Reference: QuPath's count on the vsi crop (1353).

    The vsi scan is pale: QuPath's fixed threshold (0.1) kept only about 830 of its nuclei
    (39% under QuPath). The threshold set per slide above the signal between nuclei (its
    baseline) keeps about 1,000.
    """
    n_qupath, _ = _qupath("OS-2-vsi")
    n_ours, _, _ = ki67["OS-2-vsi"]
    assert abs(n_ours - n_qupath) <= 0.3 * n_qupath, f"vsi: {n_ours} cells vs QuPath {n_qupath}"


@pytest.mark.parametrize("name", ["OS-2-ndpi", "OS-2-vsi"])
def test_ki67_percentage_near_qupath(ki67, name):
    """Reference: QuPath's % positive on the same crop; the two differ by their detections."""
    _, pct_qupath = _qupath(name)
    _, pct_ours, _ = ki67[name]
    assert abs(pct_ours - pct_qupath) <= 5.0, f"{name}: {pct_ours:.1f}% vs QuPath {pct_qupath:.1f}%"


@pytest.mark.parametrize("name", ["cmu_small_region.svs", "OS-1-detail.ome.tif"])
def test_he_slide_is_not_dab_positive(name):
    """Reference: an H&E slide holds no DAB, so (nearly) no cell may be positive.

    Eosin-stained fibres and the edges of red cells project onto the DAB plane as thin lines,
    which the located membrane reads as DAB ridges: cmu_small_region 2.1% of its cells (1.0%
    when a line on fewer than ``measure.MIN_LINE_SECTORS`` sectors was averaged with the band,
    0.2% with the band alone). QC fails the slide ("no DAB-like stain", a second stain out of
    the plane), so it is never called; with QuPath's fixed vectors eosin reads 46% positive.
    """
    n, pct, _ = _score(WSI / name, tumour_cells="all")
    assert n > 100, f"{name}: only {n} cells detected"
    assert pct < 3.0, f"{name}: {pct:.1f}% of {n} cells DAB-positive"


@pytest.mark.parametrize("name", ["OS-2-ndpi", "OS-2-vsi"])
def test_nuclear_stain_at_the_cxcr4_default_is_small_and_flagged(name):
    """Reference: Ki67 is purely nuclear, so read at the CXCR4 default compartments (membrane
    and cytoplasm) its brown nuclei must not make the cells positive: at most 3% (issue 20).
    Brown nuclei take their whole brown outline (ndpi 16% -> 5.3%), and the slide, whose sampled
    DAB-stained cells are mostly nuclear, also finds nuclei on DAB (ndpi 1.6%, vsi 0.6%), which
    its stain notes say; its DAB-stained cells are mostly nuclear, which flags the patient."""
    settings = config.merge(config.default_config(), {"tumour_cells": "all"})
    info, cells, _, summary = pipeline.score_slide(WSI / f"{name}.ome.tif", slide_id=name, config=settings)
    scored = cells[cells["scored"]]
    pct = 100.0 * float((scored["class"] >= 1).mean())
    assert len(scored) > 900
    assert pct <= 3.0, f"{pct:.1f}% positive at membrane + cytoplasm"
    assert info.nucleus_dab_threshold == settings["nuclei"]["dab_threshold_nuclear_stain"] > 0
    assert "DAB-stained cells mostly nuclear" in info.stain_notes
    assert summary["n_stained"] >= 10 and summary["pct_stained_nuclear"] > 50.0, summary["pct_stained_nuclear"]
