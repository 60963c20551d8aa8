"""Speed and accuracy benchmarks (``cxcr4score bench speed|accuracy``).

Speed: on a generated, fully tissue-covered tile at 0.5 um/px, each stage of our code and of
the plain scikit-image reference (``tests/reference.py`` semantics, re-implemented here with
library calls only so that an installed package can run it) is timed in the same run, on one
thread; Mpix/s counts every pixel; ratios are ours over the reference; medians of repeats.
Accuracy: generated tiles with per-cell truth, scored through the same code path as the
workflow; cells matched to truth within 4 um.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from . import config as cx_config
from . import measure, pipeline, score, stains, synthetic, tissue

#: A detected cell matches a truth cell when their nucleus centroids are this close (um).
MATCH_UM = 4.0


def _median_time(func, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _reference_deconvolve(rgb, i0, matrix):
    od = -np.log10(np.clip(rgb.astype(np.float64), 1.0, i0) / i0)
    concentrations = od @ np.linalg.inv(matrix)
    return concentrations[..., 0], concentrations[..., 1]


def _reference_statistics(dab, cells, codes):
    from skimage.measure import regionprops_table

    for code in (1, 2, 3):
        regionprops_table(np.where(codes == code, cells, 0), intensity_image=dab, properties=("label", "intensity_mean"))


def speed(*, size=2048, repeats=3, seed=0):
    """Time our stages and the reference's on one fully tissue-covered tile, one thread.

    Returns
    -------
    dict
        ``stages``: per stage, seconds and Mpix/s for ours and the reference and their ratio.
    """
    import cv2
    import numba
    from skimage.color import rgb2hed
    from skimage.segmentation import expand_labels

    numba.set_num_threads(1)
    cv2.setNumThreads(1)
    spec = synthetic.TileSpec(size_um=(size * 0.5, size * 0.5), mpp=0.5, glass_fraction=0.0)
    tile = synthetic.generate_tile(spec, seed=seed)
    rgb, mpp = tile.rgb, 0.5
    config = cx_config.default_config()
    matrix = stains.stain_matrix()
    i0 = np.array([240.0, 240.0, 240.0])
    tables = stains.concentration_tables(i0, matrix)
    hem, _ = measure.deconvolve(rgb, tables)  # warm-up (compilation)
    nuclei, cells, codes, _ = pipeline.segment_cells(hem, mpp=mpp, config=config)
    n = int(nuclei.max())
    rows, cols, _ = measure.nucleus_centroids(nuclei, n)

    def ours_stats():
        measure.measure_cells(rgb, cells, codes, n_cells=n, tables=tables, alt_dab_table=tables[1],
                              centroid_row=rows, centroid_col=cols, in_scope=np.ones(n + 1, bool),
                              )

    ours_stats()

    def ours_end_to_end():
        tissue.tissue_mask(rgb, mpp=mpp)
        h, _ = measure.deconvolve(rgb, tables)
        nuc, cel, cod, _ = pipeline.segment_cells(h, mpp=mpp, config=config)
        k = int(nuc.max())
        r, c, _ = measure.nucleus_centroids(nuc, k)
        measure.measure_cells(rgb, cel, cod, n_cells=k, tables=tables, alt_dab_table=tables[1],
                              centroid_row=r, centroid_col=c, in_scope=np.ones(k + 1, bool))

    def reference_end_to_end():
        h, d = _reference_deconvolve(rgb, i0, matrix)
        cel = _reference_segmentation(h, mpp, expand_labels)
        _reference_statistics(d, cel, np.where(cel > 0, 2, 0))

    ref_hem, ref_dab = _reference_deconvolve(rgb, i0, matrix)
    stages = {
        "deconvolution": (lambda: measure.deconvolve(rgb, tables), lambda: _reference_deconvolve(rgb, i0, matrix)),
        "deconvolution_vs_rgb2hed": (lambda: measure.deconvolve(rgb, tables), lambda: rgb2hed(rgb)),
        "segmentation": (lambda: pipeline.segment_cells(hem, mpp=mpp, config=config),
                         lambda: _reference_segmentation(ref_hem, mpp, expand_labels)),
        "measurement": (ours_stats, lambda: _reference_statistics(ref_dab, cells, codes)),
        "end_to_end": (ours_end_to_end, reference_end_to_end),
    }
    mpix = rgb.shape[0] * rgb.shape[1] / 1e6
    result = {"size": size, "mpix": mpix, "threads": 1, "repeats": repeats, "stages": {}}
    for name, (ours, reference) in stages.items():
        t_ours, t_ref = _median_time(ours, repeats), _median_time(reference, repeats)
        result["stages"][name] = {
            "ours_s": t_ours, "reference_s": t_ref, "ours_mpix_s": mpix / t_ours,
            "reference_mpix_s": mpix / t_ref, "ratio": t_ref / t_ours,
        }
    return result


def _reference_segmentation(hematoxylin, mpp, expand_labels):
    from skimage import filters, morphology

    hem = hematoxylin - morphology.opening(hematoxylin, morphology.disk(int(round(8 / mpp))))
    hem = filters.gaussian(hem, sigma=1.5 / mpp)
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    foreground = hem >= 0.1
    distance = ndi.distance_transform_edt(foreground)
    labels, _ = ndi.label(foreground)
    peaks = peak_local_max(distance, min_distance=4, labels=labels, exclude_border=False)
    markers = np.zeros(foreground.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    nuclei = watershed(-distance, markers, mask=foreground)
    return expand_labels(nuclei, distance=5 / mpp)


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


def main(args):
    """Run a benchmark from parsed command-line arguments; print a table."""
    if args.kind == "speed":
        result = speed(size=args.size, repeats=args.repeats)
        table = pd.DataFrame(result["stages"]).T
        print(f"speed on a {args.size}^2 tile ({result['mpix']:.1f} Mpix), 1 thread, median of {args.repeats}:")
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    else:
        result = accuracy(tiles=args.tiles, size=args.size)
        table = result
        print(table.to_string(float_format=lambda v: f"{v:.3f}"))
        print("mean:", result.drop(columns=["tile"]).mean().round(3).to_dict())
        result = {"tiles": result.to_dict(orient="records")}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0
