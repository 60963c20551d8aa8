"""Tissue mask: where on the image there is tissue to score.

Tissue absorbs light in every channel; glass does not. The mask is the smoothed optical
density summed over channels, thresholded, with small fragments dropped and small holes
filled. OD is taken against a provisional white, the 99th percentile of each channel: a
scanner's glass is often 215-245, not 255, and against 255 such glass alone has an OD sum
above the threshold.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import _kernels
from .measure import label_areas

#: Smoothing of the OD sum before thresholding, in micrometres (ignores single-cell gaps).
TISSUE_SIGMA_UM = 2.0

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
    _kernels.channel_counts_kernel(pixels, step, counts)
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
    values = np.arange(256, dtype=np.float64)[:, None]
    white = np.asarray(white, dtype=np.float64)[None, :]
    table = -np.log10(np.clip(values, 1.0, white) / white).astype(np.float32)  # (256, 3)
    out = np.empty(rgb.shape[:2], np.float32)
    _kernels.od_sum_kernel(np.ascontiguousarray(rgb), np.ascontiguousarray(table), out)
    return out


def _filter_area(mask, min_px):
    """Drop 8-connected components of ``mask`` smaller than ``min_px`` pixels."""
    _, labels = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    keep = label_areas(labels) >= min_px
    keep[0] = False
    if keep[1:].all():
        return mask.copy()
    out = np.empty(mask.shape, np.uint8)
    _kernels.relabel_kernel(labels, keep.view(np.uint8), out)
    return out.view(bool)


def tissue_mask(rgb, *, mpp, od_threshold=0.05, min_area_um2=2000.0):
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

    Returns
    -------
    (M, N) ndarray of bool
    """
    if mpp <= 0:
        raise ValueError(f"pixel size must be positive, got {mpp!r}")
    sigma = TISSUE_SIGMA_UM / mpp
    smoothed = cv2.GaussianBlur(od_sum(rgb, provisional_white(rgb)), (0, 0), sigma)
    min_px = max(1, int(round(min_area_um2 / mpp**2)))
    tissue = _filter_area(smoothed >= od_threshold, min_px)
    holes = _filter_area(~tissue, min_px)
    return tissue | ~holes
