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
    pixels = rgb.reshape(-1, 3)
    step = max(1, pixels.shape[0] // 1_000_000)
    white = np.percentile(pixels[::step], WHITE_PERCENTILE, axis=0)
    return white if white.min() >= MIN_WHITE else np.full(3, 255.0)


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
    return cv2.LUT(rgb, table.reshape(1, 256, 3)).sum(axis=2, dtype=np.float32)


def _filter_area(mask, min_px):
    """Drop 8-connected components of ``mask`` smaller than ``min_px`` pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[labels]


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
