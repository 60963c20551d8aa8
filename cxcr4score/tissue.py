"""Tissue mask: where on the image there is tissue to score.

Tissue absorbs light in every channel; glass does not. The mask is the smoothed optical
density summed over channels, thresholded, with small fragments dropped and small holes
filled. OD is taken against a provisional white, the 99th percentile of each channel: a
scanner's glass is often 215-245, not 255, and against 255 such glass alone has an OD sum
above the threshold.

The mask is coarse by design (smoothing at 2 um; in the workflow it runs on the slide overview),
so an image finer than about 1 um/px is masked at a working pixel size near 1 um: the OD sum is
block-averaged (OD, not RGB: OD is concave in intensity, and averaging RGB shrinks the mask at
thin edges), smoothed, thresholded and area-filtered there, and brought back to the input
grid by replication, except in blocks at the mask's edge, where the smoothed OD is
interpolated (bicubic) and thresholded pixel by pixel. On generated tiles with glass, the
sample slides and real scans this agrees with the full-resolution mask on >= 99.5% of pixels
(tests/test_tissue.py) at a fraction of its cost (a 2048^2 image at 0.5 um/px: 4x fewer pixels
through the Gaussian and the component labelling).
"""

from __future__ import annotations

import cv2
import numpy as np

from ._kernels import tissue as kernels
from ._kernels.labels import relabel_kernel
from .measure import label_areas

#: Smoothing of the OD sum before thresholding, in micrometres (ignores single-cell gaps).
TISSUE_SIGMA_UM = 2.0

#: Pixel size (um) of the working grid an image finer than this is masked on (rounded to an
#: integer block factor).
WORK_MPP_UM = 1.0

#: Percentile of each channel taken as provisional white.
WHITE_PERCENTILE = 99.0
#: A provisional white darker than this in any channel is not glass; 255 is used instead.
MIN_WHITE = 150.0


def provisional_white(rgb):
    """Per-channel 99th percentile of the image (on a subsample), or 255 if implausibly dark.

    Returns
    -------
    (3,) ndarray of float64
    """
    pixels = np.ascontiguousarray(rgb).reshape(-1, 3)
    step = max(1, pixels.shape[0] // 1_000_000)
    counts = np.zeros((3, 256), np.int64)
    kernels.channel_counts_kernel(pixels, step, counts)
    white = np.array([_percentile_of_counts(c, WHITE_PERCENTILE) for c in counts])
    return white if white.min() >= MIN_WHITE else np.full(3, 255.0)


def _percentile_of_counts(counts, q):
    """``np.percentile(values, q)`` (linear method) of 8-bit values given by their counts.

    Same arithmetic as NumPy's: virtual index (n - 1) q / 100 between the order statistics
    a <= b, then a + (b - a) t, or b - (b - a)(1 - t) when t >= 0.5; a histogram instead of
    a sort of the subsample.
    """
    n = int(counts.sum())
    index = (n - 1) * np.true_divide(q, 100)
    below = int(np.floor(index))
    above = min(below + 1, n - 1)
    cumulative = np.cumsum(counts)
    a, b = np.searchsorted(cumulative, [below, above], side="right").astype(np.float64)
    t = index - below
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t


def _od_table(white):
    values = np.arange(256, dtype=np.float64)[:, None]
    white = np.asarray(white, dtype=np.float64)[None, :]
    return np.ascontiguousarray(-np.log10(np.clip(values, 1.0, white) / white).astype(np.float32))  # (256, 3)


def od_sum(rgb, white=(255.0, 255.0, 255.0)):
    """Optical density summed over the three channels against ``white`` (clamped at 0).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
    white : (3,) array_like
        Per-channel intensity of zero OD.

    Returns
    -------
    (M, N) ndarray of float32
    """
    out = np.empty(rgb.shape[:2], np.float32)
    kernels.od_sum_kernel(np.ascontiguousarray(rgb), _od_table(white), out)
    return out


def _block_mean(image, factor):
    """``image`` averaged over ``factor`` x ``factor`` blocks (OpenCV INTER_AREA), the last row
    and column of blocks padded by replicating the edge pixels.

    Returns
    -------
    (ceil(M / factor), ceil(N / factor)) ndarray of ``image.dtype``
    """
    pad_rows, pad_cols = -image.shape[0] % factor, -image.shape[1] % factor
    if pad_rows or pad_cols:
        image = cv2.copyMakeBorder(image, 0, pad_rows, 0, pad_cols, cv2.BORDER_REPLICATE)
    size = (image.shape[1] // factor, image.shape[0] // factor)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _filter_area(mask, min_px):
    """Drop 8-connected components of ``mask`` smaller than ``min_px`` pixels."""
    _, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    keep = label_areas(labels) >= min_px
    keep[0] = False
    if keep[1:].all():
        return mask.copy()
    out = np.empty(mask.shape, np.uint8)
    # An int32 table: the lookup then vectorises (gathers); a uint8 one stays scalar, several times slower.
    relabel_kernel(labels, keep.astype(np.int32), out)
    return out.view(bool)


def _cubic_weights(factor):
    """Per sub-pixel k of a block, at source position x = (k + 0.5) / factor - 0.5 in block
    units: floor(x), the block offset of the second of the four taps, and OpenCV's bicubic
    weights (Keys, a = -0.75) of the taps floor(x) - 1 .. floor(x) + 2."""
    position = (np.arange(factor) + 0.5) / factor - 0.5
    offsets = np.floor(position)
    t = position - offsets
    a = -0.75
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    return offsets.astype(np.int64), np.stack([w0, w1, w2, 1 - w0 - w1 - w2], axis=1)


def _threshold_and_fill(smoothed, od_threshold, min_px):
    tissue = _filter_area(smoothed >= od_threshold, min_px)
    holes = _filter_area(~tissue, min_px)
    return tissue | ~holes


def tissue_mask(rgb, *, mpp, od_threshold=0.05, min_area_um2=2000.0, work_mpp=WORK_MPP_UM):
    """Boolean tissue mask of an RGB brightfield image.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
    mpp : float
        Pixel size in micrometres.
    od_threshold : float, optional
        Smoothed OD sum at or above which a pixel is tissue.
    min_area_um2 : float, optional
        Fragments smaller than this are dropped and holes smaller than this are filled.
    work_mpp : float, optional
        Working pixel size: an image finer than this is masked on blocks of
        ``round(work_mpp / mpp)`` pixels (see the module notes); ``mpp`` or less masks at full
        resolution. Must be below sqrt(12) x 2 um (the block average would smooth more than
        the 2 um Gaussian).

    Returns
    -------
    (M, N) ndarray of bool
    """
    if mpp <= 0:
        raise ValueError(f"pixel size must be positive, got {mpp!r}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        return np.zeros(rgb.shape[:2], bool)
    factor = max(1, round(work_mpp / mpp))
    white = provisional_white(rgb)
    if factor == 1:
        smoothed = cv2.GaussianBlur(od_sum(rgb, white), (0, 0), TISSUE_SIGMA_UM / mpp)
        return _threshold_and_fill(smoothed, od_threshold, max(1, int(round(min_area_um2 / mpp**2))))
    # The block average already smooths by a box of variance (f^2 - 1) / 12 pixels^2 per
    # axis: the Gaussian makes up the rest of (2 um)^2.
    variance = (TISSUE_SIGMA_UM / mpp) ** 2 - (factor**2 - 1) / 12
    if variance <= 0:
        raise ValueError(f"working pixel size {work_mpp!r} um is coarser than the tissue smoothing allows "
                         f"(below {np.sqrt(12) * TISSUE_SIGMA_UM:.1f} um)")
    sigma = np.sqrt(variance) / factor
    smoothed = cv2.GaussianBlur(_block_mean(od_sum(rgb, white), factor), (0, 0), sigma)
    coarse = _threshold_and_fill(smoothed, od_threshold, max(1, int(round(min_area_um2 / (mpp * factor) ** 2))))
    return _upsample_mask(coarse, smoothed, factor, od_threshold, rgb.shape[:2])


def _upsample_mask(coarse, smoothed, factor, od_threshold, shape):
    """The block mask ``coarse`` on the input grid: replicated, except in blocks with an
    8-neighbour of the other value, where ``smoothed`` is interpolated and thresholded."""
    edge = cv2.morphologyEx(coarse.view(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8),
                            borderType=cv2.BORDER_REPLICATE)
    edge_blocks = cv2.findNonZero(edge)  # (K, 1, 2) as (column, row), or None; faster than np.nonzero
    edge_blocks = np.zeros((0, 2), np.int32) if edge_blocks is None else edge_blocks.reshape(-1, 2)
    offsets, weights = _cubic_weights(factor)
    out = np.empty(shape, np.uint8)
    kernels.mask_upsample_kernel(coarse.view(np.uint8), edge_blocks, smoothed, np.arange(max(shape)) // factor,
                                  offsets, weights, float(od_threshold), out)
    return out.view(bool)
