"""Accuracy benchmark (``cxcr4score bench accuracy``).

Generated tiles with per-cell truth, scored through the same code path as the workflow;
cells matched to truth within 4 um.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .. import config as cx_config
from .. import pipeline, score, synthetic

#: A detected cell matches a truth cell when their nucleus centroids are this close (um).
MATCH_UM = 4.0


def _kappa(truth, predicted, n_classes=4):
    """Quadratic-weighted Cohen's kappa."""
    observed = np.zeros((n_classes, n_classes))
    np.add.at(observed, (truth, predicted), 1)
    expected = np.outer(observed.sum(1), observed.sum(0)) / observed.sum()
    i, j = np.indices((n_classes, n_classes))
    weights = (i - j) ** 2 / (n_classes - 1) ** 2
    return float(1 - (weights * observed).sum() / (weights * expected).sum())


def _h_score(classes):
    counts = np.bincount(np.asarray(classes, int), minlength=4)
    return score.summarize_counts(counts)["h_score"]


def _match(cells, truth, mpp):
    distance, index = cKDTree(cells[["x", "y"]].to_numpy()).query(
        truth[["x", "y"]].to_numpy(), distance_upper_bound=MATCH_UM / mpp
    )
    matched = np.isfinite(distance)
    # One detection may be the nearest of two truth cells: keep the closer pair only.
    order = np.argsort(distance[matched])
    truth_idx = np.flatnonzero(matched)[order]
    _, first = np.unique(index[truth_idx], return_index=True)
    truth_idx = truth_idx[first]
    return truth_idx, index[truth_idx]


def accuracy(*, tiles=4, size=1024, seed=100, tmp_dir=None):
    """Score generated tiles and compare with their truth.

    Returns
    -------
    pandas.DataFrame
        One row per tile: detection precision, recall and F1 (all cells), tumour-cell
        recall, per-cell class agreement and quadratic kappa of matched tumour cells,
        Pearson r of membrane DAB, truth and measured H-scores (matched tumour cells; the
        scored cells, as reported), and the precision and recall of the tumour cell type.
    """
    import tempfile
    from pathlib import Path

    config = cx_config.default_config()
    rows = []
    with tempfile.TemporaryDirectory(dir=tmp_dir) as folder:
        for k in range(tiles):
            spec = synthetic.TileSpec(size_um=(size * 0.5, size * 0.5), positive_fraction=(0.1, 0.3, 0.5, 0.7)[k % 4],
                                      lymphocyte_positive_fraction=0.3)
            tile = synthetic.generate_tile(spec, seed=seed + k)
            path = Path(folder) / f"tile_{k}.tif"
            synthetic.write_tile(tile, path, jpeg_quality=90)
            _, cells, _, _ = pipeline.score_slide(path, slide_id=f"tile_{k}", config=config)
            rows.append(_compare(cells, tile.truth, tile.mpp) | {"tile": k, "positive_fraction": spec.positive_fraction})
    return pd.DataFrame(rows)


def _compare(cells, truth, mpp):
    truth_idx, cell_idx = _match(cells, truth, mpp)
    precision = len(cell_idx) / max(1, len(cells))
    recall = len(truth_idx) / max(1, len(truth))
    t = truth.iloc[truth_idx].reset_index(drop=True)
    c = cells.iloc[cell_idx].reset_index(drop=True)
    tumour = (t["cell_type"] == "tumour").to_numpy()
    tumour_truth = truth["cell_type"] == "tumour"
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(1e-12, precision + recall),
        "tumour_recall": tumour.sum() / max(1, tumour_truth.sum()),
        "class_agreement": float((t["class"][tumour] == c["class"][tumour]).mean()),
        "class_kappa": _kappa(t["class"][tumour].to_numpy(int), c["class"][tumour].to_numpy(int)),
        "membrane_r": float(np.corrcoef(t["dab_membrane"][tumour], c["dab_membrane"][tumour].fillna(0))[0, 1]),
        "h_score_truth_tumour": _h_score(truth["class"][tumour_truth]),
        "h_score_matched_tumour": _h_score(c["class"][tumour]),
        "h_score_scored": _h_score(cells["class"][cells["scored"]]),
        "type_tumour_precision": float(np.mean(t["cell_type"][c["cell_type"] == "tumour"] == "tumour")),
        "type_tumour_recall": float(np.mean(c["cell_type"][tumour] == "tumour")),
    }
