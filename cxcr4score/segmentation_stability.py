"""How a slide's scores move when its segmentation does (the stability re-evaluation).

A call that rests on where nuclei and cells were drawn is not stable (DESIGN section 5 re-makes
the call under each variant). Segmenting a whole slide again per variant would cost more than
its measurement, so each variant is measured on a sample: ``slide_info`` segments a few of the
slide's tissue tiles nominally and under each variant (:func:`sample`), and the merge scales the
slide's nominal block counts by how the sample's class counts moved (:func:`variant_blocks`).
The sample's tiles lie inside the slide's ROI when at least one tile is mostly ROI tissue (else
they are the slide's tissue tiles), and its cells are typed as the slide's are.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from . import celltype, score
from .score import COUNT_COLUMNS

#: Relative shift of the nucleus threshold (config ``nuclei.threshold``, above the slide's
#: baseline): 0.05 OD becomes 0.07 (fewer, smaller nuclei) or 0.03 (more, larger ones).
NUCLEUS_THRESHOLD_TOLERANCE = 0.4
#: Shift of the cell expansion (um; config ``cell_expansion_um``): where cytoplasm and the
#: membrane band of a cell without neighbours lie.
CELL_EXPANSION_TOLERANCE_UM = 1.0
#: Tissue tiles of ``slide_info``'s sample segmented per variant (of its up to 16 focus tiles,
#: spread evenly): four variants of 8 tiles of 256 px cost about 0.3 s a slide.
SAMPLE_TILES = 8
#: Fewer scored cells than this in the nominal sample: no segmentation variant (too few to
#: say how the scores move).
MIN_SAMPLE_CELLS = 50
#: Cells added to each class of the sample, nominal and variant, before their ratio is taken:
#: a class of a few sampled cells (positive cells near a 1% cutoff) would otherwise move the
#: whole slide by a factor of 0.5-3 when one cell changes class; a class of hundreds is barely
#: affected.
PRIOR_CELLS = 5.0
#: The sample's columns: what a class and the tumour type are read from.
SAMPLE_COLUMNS = ("dab_nucleus", "dab_cytoplasm", "dab_membrane", "dab_cell", "membrane_exposed_fraction",
                  "membrane_line_sectors", "tumour")
#: Segmentation variants, in the order of ``eligibility.VARIANTS``.
VARIANT_NAMES = ("nuclei_fewer", "nuclei_more", "cells_smaller", "cells_larger")


def variant_configs(config):
    """{variant: configuration} of the segmentation variants that differ from ``config``."""
    threshold = config["nuclei"]["threshold"]
    expansion = config["cell_expansion_um"]
    changes = {
        "nuclei_fewer": ("nuclei", "threshold", threshold * (1 + NUCLEUS_THRESHOLD_TOLERANCE)),
        "nuclei_more": ("nuclei", "threshold", threshold * (1 - NUCLEUS_THRESHOLD_TOLERANCE)),
        "cells_smaller": (None, "cell_expansion_um", max(0.0, expansion - CELL_EXPANSION_TOLERANCE_UM)),
        "cells_larger": (None, "cell_expansion_um", expansion + CELL_EXPANSION_TOLERANCE_UM),
    }
    configs = {}
    for name, (section, key, value) in changes.items():
        varied = copy.deepcopy(config)
        (varied[section] if section else varied)[key] = value
        if varied != config:
            configs[name] = varied
    return configs


def sample(tiles, *, tables, mpp, config, baseline, dab_threshold, reference):
    """The cells of some tissue tiles, nominal and under each segmentation variant.

    Parameters
    ----------
    tiles : sequence of (M, N, 3) ndarray of uint8
        Tissue tiles at ``mpp`` (at most :data:`SAMPLE_TILES` are used, spread evenly).
    tables, mpp, config, baseline, dab_threshold
        As :func:`cxcr4score.sampled_tiles.tile_cells` (the slide's).
    reference : float or None
        The slide's typing reference (:func:`cxcr4score.celltype.darkness_reference`).

    Returns
    -------
    dict
        ``{"nominal" or a variant: {column: list}}`` with :data:`SAMPLE_COLUMNS` (DAB means
        rounded to 1e-4 OD, ``tumour`` 0 / 1): JSON-serialisable, kept in the slide's info.
        Empty when the tiles hold fewer than :data:`MIN_SAMPLE_CELLS` cells.
    """
    # Imported here: it brings the pixel stack (kernels, OpenCV), which the eligibility step,
    # importing this module for its variant names, does not need.
    from . import sampled_tiles

    if len(tiles) > SAMPLE_TILES:
        tiles = [tiles[i] for i in np.linspace(0, len(tiles) - 1, SAMPLE_TILES).round().astype(int)]
    out = {}
    for name, varied in {"nominal": config, **variant_configs(config)}.items():
        cells = sampled_tiles.sampled_cells(
            tiles, ("nucleus_area_um2", "nucleus_axis_ratio", "hematoxylin_nucleus", "neighbour_nucleus_area_um2",
                    *SAMPLE_COLUMNS[:-1]),
            tables=tables, mpp=mpp, config=varied, baseline=baseline, dab_threshold=dab_threshold)
        if name == "nominal" and len(cells) < MIN_SAMPLE_CELLS:
            return {}
        tumour = celltype.classify_cell_types(cells, reference=reference) == "tumour"
        out[name] = {c: [None if np.isnan(v) else round(float(v), 4) for v in cells[c]] for c in SAMPLE_COLUMNS[:-1]}
        out[name]["tumour"] = tumour.astype(int).tolist()
    return out


def _class_counts(cells, config):
    """Class counts 0-3 of a sample's scored cells under the config's class settings."""
    table = pd.DataFrame({c: pd.Series(cells[c], dtype=float) for c in SAMPLE_COLUMNS[:-1]})
    values = score.scored_values(table, class_rule=config["class_rule"], compartments=tuple(config["compartments"]),
                                 exposed_max=config["membrane_exposed_max"])
    classes = score.classify(values, np.asarray(config["thresholds"], dtype=np.float64))
    if config["tumour_cells"] == "morphology":
        classes = classes[np.asarray(cells["tumour"], dtype=bool)]
    return np.bincount(classes, minlength=4)[:4].astype(np.float64)


def variant_blocks(nominal_blocks, samples, config):
    """Block class counts of the scored cells under each segmentation variant.

    Parameters
    ----------
    nominal_blocks : pandas.DataFrame
        The slide's nominal scored-class counts per block: ``block_id, n0..n3``.
    samples : dict
        :func:`sample` of the slide (empty: no variant).
    config : dict
        Effective configuration (thresholds, class settings, ``tumour_cells``).

    Returns
    -------
    pandas.DataFrame
        ``variant, measure, block_id, n0..n3`` (measure ``class``): each block's counts times
        the sample's change per class, ``(variant + PRIOR_CELLS) / (nominal + PRIOR_CELLS)``,
        all times one factor so that the slide's total moves as the sample's number of scored
        cells does, rounded.

    Notes
    -----
    An estimate: it assumes the slide's other tiles move as the sampled ones do. With fewer
    than :data:`MIN_SAMPLE_CELLS` scored cells in the nominal sample no variant is given. The
    total is rescaled over the slide, not per block: a block of negative cells only would
    otherwise stay as it is, and a slide whose positive cells cluster in some blocks would not
    move at all.
    """
    nominal = _class_counts(samples["nominal"], config) if samples else np.zeros(4)
    if nominal.sum() < MIN_SAMPLE_CELLS:
        return _no_rows()
    counts = nominal_blocks[list(COUNT_COLUMNS)].to_numpy(np.float64)
    rows = []
    for name in VARIANT_NAMES:
        if name not in samples:
            continue
        varied = _class_counts(samples[name], config)
        scaled = counts * (varied + PRIOR_CELLS) / (nominal + PRIOR_CELLS)
        if scaled.sum() > 0:
            scaled *= counts.sum() * varied.sum() / nominal.sum() / scaled.sum()
        table = pd.DataFrame(np.rint(scaled).astype(np.int64), columns=list(COUNT_COLUMNS))
        table.insert(0, "block_id", nominal_blocks["block_id"].to_numpy())
        table.insert(0, "measure", "class")
        table.insert(0, "variant", name)
        rows.append(table)
    return pd.concat(rows, ignore_index=True) if rows else _no_rows()


def _no_rows():
    return pd.DataFrame({"variant": pd.Series(dtype=object), "measure": pd.Series(dtype=object),
                         **{c: pd.Series(dtype=np.int64) for c in ("block_id", *COUNT_COLUMNS)}})
