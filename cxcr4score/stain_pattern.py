"""Whether a slide's stain is nuclear, from the cells of its sampled tissue tiles.

A nuclear stain (Ki67; a nuclear CXCR4 clone) browns nuclei whose hematoxylin is then weak:
found in part or not at all on hematoxylin, their DAB is read as the cytoplasm and membrane of
the cells around them. On such a slide nuclei are also found on DAB
(:func:`cxcr4score.segment.detect_nuclei` with a ``dab_threshold``). On membrane and cytoplasm
stains that would take stained cell bodies for nuclei, so the choice is made per slide, before
its chunks are measured, from how the DAB-stained cells of its sampled tiles are stained.
"""

from __future__ import annotations

import numpy as np

from . import celltype, sampled_tiles, score
from .eligibility import NUCLEAR_PATTERN_PCT, PATTERN_MIN_POSITIVE

_SAMPLED_COLUMNS = ("nucleus_area_um2", "nucleus_axis_ratio", "hematoxylin_nucleus", "neighbour_nucleus_area_um2",
                    "pattern")
#: What :func:`cxcr4score.score.staining_pattern` reads besides the typing columns.
_MEASURED_COLUMNS = (*_SAMPLED_COLUMNS[:-1], "dab_nucleus", "dab_cytoplasm", "dab_membrane", "dab_cell",
                     "membrane_exposed_fraction", "membrane_line_sectors")

#: How the sampled cells' staining is read: DAB-stained at the default 1+ threshold (OD), a
#: membrane read on cytoplasm above the default exposed share (unless a line is located on it),
#: tumour cells by morphology. Fixed, not the config's scoring keys: the check decides how
#: nuclei are found (pixel work), and a change of thresholds, class settings or
#: ``tumour_cells`` reruns no pixel work.
STAINED_OD, EXPOSED_MAX, TUMOUR_CELLS = 0.2, 0.5, "morphology"


def sampled_cells(tiles, *, tables, mpp, config, baseline):
    """The cells of some tissue tiles as the workflow would see them: nucleus, type, pattern.

    Cells are typed with the darkness reference of all the tiles' nuclei (the slide's, see
    :func:`cxcr4score.celltype.darkness_reference`) and selected as for scoring by morphology
    (:data:`TUMOUR_CELLS`), so that CXCR4-positive lymphocytes typed immune, whose
    stained rim is mostly nucleus at this scale, do not count. (On generated slides whose only
    stained cells are lymphocytes many of them are typed tumour, and the slide still reads
    nuclear: method.md section 6.)

    Parameters
    ----------
    tiles : sequence of (M, N, 3) ndarray of uint8
        RGB tissue tiles at ``mpp``.
    tables, mpp, config, baseline
        As :func:`cxcr4score.sampled_tiles.tile_cells`.

    Returns
    -------
    pandas.DataFrame
        One row per cell of any tile: ``nucleus_area_um2``, ``nucleus_axis_ratio``,
        ``hematoxylin_nucleus``, ``neighbour_nucleus_area_um2`` (among the tile's nuclei), ``pattern`` (:data:`cxcr4score.score.PATTERNS`) and ``scored``.
    """
    sampled = sampled_tiles.sampled_cells(tiles, _MEASURED_COLUMNS, tables=tables, mpp=mpp, config=config,
                                          baseline=baseline)
    sampled["pattern"] = score.staining_pattern(sampled, threshold=STAINED_OD, exposed_max=EXPOSED_MAX)
    sampled = sampled[list(_SAMPLED_COLUMNS)].copy()
    types = celltype.classify_cell_types(sampled)
    sampled["scored"], _ = celltype.scored_cells(types, np.ones(len(sampled), bool),
                                                 tumour_cells=TUMOUR_CELLS)
    return sampled


def nuclear_share(patterns):
    """The number of DAB-stained cells and the percentage of them stained most in the nucleus
    (NaN without stained cells)."""
    stained = np.asarray(patterns, dtype=object)
    stained = stained[stained != score.PATTERNS[3]]
    return int(stained.size), float(100 * np.mean(stained == "nuclear")) if stained.size else float("nan")


def nucleus_dab_threshold(config, n_stained, pct_nuclear):
    """The DAB threshold from which a slide's brown blobs are nuclei (0: hematoxylin only).

    Config ``nuclei.dab_threshold``, when set (> 0), holds for every slide; otherwise a slide
    whose stain is nuclear gets ``nuclei.dab_threshold_nuclear_stain``. The stain is nuclear
    when more than half of the DAB-stained cells of its sampled tiles (of at least 10) are
    stained most in the nucleus: the level at which a patient is flagged "staining
    predominantly nuclear" (:data:`cxcr4score.eligibility.NUCLEAR_PATTERN_PCT`). The OS-2 Ki67
    scans read 93% and 99%, Ki67 fields 41-100% (median 82%), a HER2 2+ core 0.6%, the demo
    cohort at most 5%.

    Examples
    --------
    >>> config = {"nuclei": {"dab_threshold": 0.0, "dab_threshold_nuclear_stain": 0.3}}
    >>> nucleus_dab_threshold(config, 99, 92.9), nucleus_dab_threshold(config, 163, 0.6)
    (0.3, 0.0)
    >>> nucleus_dab_threshold(config, 4, 100.0)
    0.0
    """
    settings = config["nuclei"]
    if settings["dab_threshold"] > 0:
        return float(settings["dab_threshold"])
    nuclear = n_stained >= PATTERN_MIN_POSITIVE and pct_nuclear > NUCLEAR_PATTERN_PCT
    return float(settings["dab_threshold_nuclear_stain"]) if nuclear else 0.0
