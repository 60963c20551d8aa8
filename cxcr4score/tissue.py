"""Tissue mask: where on the image there is tissue to score.

Tissue absorbs light in every channel; glass does not. The mask is the smoothed optical
density summed over channels (against a white of 255, before the slide's own background is
known), thresholded, with small fragments dropped and small holes filled.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Smoothing of the OD sum before thresholding, in micrometres (ignores single-cell gaps).
TISSUE_SIGMA_UM = 2.0

_OD_SUM_TABLE = -np.log10(np.clip(np.arange(256, dtype=np.float64), 1.0, 255.0) / 255.0).astype(np.float32)


def od_sum(rgb):
    """Optical density summed over the three channels against a white of 255.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8

    Returns
    -------
    (M, N) ndarray of float32
    """
    return cv2.LUT(rgb, _OD_SUM_TABLE.reshape(256, 1).repeat(3, axis=1).reshape(1, 256, 3)).sum(
        axis=2, dtype=np.float32
    )


def _filter_area(mask, min_px):
    """Drop 8-connected components of ``mask`` smaller than ``min_px`` pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return keep[labels]


def tissue_mask(rgb, *, mpp, od_threshold=0.15, min_area_um2=2000.0):
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
    smoothed = cv2.GaussianBlur(od_sum(rgb), (0, 0), sigma)
    min_px = max(1, int(round(min_area_um2 / mpp**2)))
    tissue = _filter_area(smoothed >= od_threshold, min_px)
    holes = _filter_area(~tissue, min_px)
    return tissue | ~holes
