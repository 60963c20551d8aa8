"""Speed benchmark (``cxcr4score bench speed``).

On a generated, fully tissue-covered tile at 0.5 um/px, each stage of our code and of the
plain scikit-image reference is timed in the same run, on one thread; Mpix/s counts every
pixel; ratios are ours over the reference; medians of repeats.
"""

from __future__ import annotations

import time

import numpy as np

from .. import config as cx_config
from .. import measure, pipeline, stains, synthetic, tissue


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


