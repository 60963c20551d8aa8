"""Nuclei, cell expansion and compartments.

Nucleus detection follows QuPath's positive cell detection on the hematoxylin OD image
(background subtraction with a given radius, Gaussian smoothing, a fixed threshold,
splitting of touching nuclei, an area filter); cells are nuclei expanded by a fixed distance
that never crosses a neighbour (QuPath ``cellExpansionMicrons``); the membrane band is the
part of each cell within a given distance of a boundary it shares with another cell, or of
its outer edge where it shares none.

References
----------
.. [1] Bankhead P et al. QuPath: open source software for digital pathology image
       analysis. Sci Rep 2017;7:16878 (WatershedCellDetection, positive cell detection).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skimage.morphology import disk
from skimage.segmentation import watershed

from ._kernels import BACKGROUND, CYTOPLASM, MEMBRANE, NUCLEUS

#: Smallest distance between two nucleus seeds when splitting touching nuclei (um): about
#: the radius of the smallest nucleus kept (10 um^2 -> r = 1.8 um).
SPLIT_MIN_DISTANCE_UM = 2.0
#: A nucleus pixel must also reach this fraction of the highest signal within
#: ``OUTLINE_WINDOW_UM`` (its own peak): the edge at half maximum, which blur, JPEG chroma
#: bleeding and DAB leaking into the hematoxylin channel do not move. With the fixed 0.1
#: threshold alone, nuclei came out 1.5x too large (2x in DAB-rich cells) on generated tiles,
#: pushing the membrane band off the cell boundary.
OUTLINE_FRACTION = 0.5
#: Window of the local peak (um): a little over the radius of a carcinoma nucleus (50-80 um^2),
#: so it holds the nucleus's own peak but not, mostly, a neighbour's (centres >= ~8 um apart).
OUTLINE_WINDOW_UM = 5.0
#: A seed must lie at least this far inside its nucleus (um); shallower maxima of the
#: distance transform are notches in an outline, not separate nuclei.
SPLIT_MIN_DEPTH_UM = 1.0


@dataclass(frozen=True)
class NucleusParams:
    """Nucleus detection parameters (QuPath positive cell detection defaults)."""

    background_radius_um: float = 8.0
    sigma_um: float = 1.5
    threshold: float = 0.1
    min_area_um2: float = 10.0
    max_area_um2: float = 400.0
    split: bool = True


def _disk(radius_px):
    """Euclidean disk footprint (pixels within ``radius_px`` of the centre) for OpenCV."""
    return disk(max(1, int(round(radius_px)))).astype(np.uint8)


def nucleus_signal(hematoxylin, *, mpp, params=NucleusParams()):
    """Background-subtracted, smoothed hematoxylin OD on which nuclei are thresholded.

    The background is the morphological opening with a disk of ``background_radius_um``
    (structures wider than the disk, such as diffuse counterstain or DAB bleeding into
    the hematoxylin channel, are removed); smoothing is Gaussian with ``sigma_um``.

    Parameters
    ----------
    hematoxylin : (M, N) ndarray of float32
    mpp : float

    Returns
    -------
    (M, N) ndarray of float32
    """
    hem = np.ascontiguousarray(hematoxylin, dtype=np.float32)
    if params.background_radius_um > 0:
        background = cv2.morphologyEx(hem, cv2.MORPH_OPEN, _disk(params.background_radius_um / mpp))
        hem = hem - background
    if params.sigma_um > 0:
        hem = cv2.GaussianBlur(hem, (0, 0), params.sigma_um / mpp)
    return hem


def detect_nuclei(hematoxylin, *, mpp, params=NucleusParams()):
    """Label nuclei on a hematoxylin OD image.

    Parameters
    ----------
    hematoxylin : (M, N) ndarray of float32
        Hematoxylin concentration (OD units) at ``mpp``.
    mpp : float
        Pixel size in micrometres.
    params : NucleusParams

    Returns
    -------
    labels : (M, N) ndarray of int32
        0 background, 1..n nuclei (numbered by the splitting, not in raster order).

    Notes
    -----
    A pixel is nuclear when the signal is at or above ``params.threshold`` and at or above
    half of the highest signal within ``OUTLINE_WINDOW_UM`` (the nucleus edge at half
    maximum). Touching nuclei are split by a watershed of the distance transform of the thresholded
    mask, seeded at its maxima at least ``SPLIT_MIN_DISTANCE_UM`` apart and
    ``SPLIT_MIN_DEPTH_UM`` deep. Nuclei outside the area limits are dropped after splitting.
    """
    if mpp <= 0:
        raise ValueError(f"pixel size must be positive, got {mpp!r}")
    signal = nucleus_signal(hematoxylin, mpp=mpp, params=params)
    local_peak = cv2.dilate(signal, _disk(OUTLINE_WINDOW_UM / mpp))
    foreground = (signal >= params.threshold) & (signal >= OUTLINE_FRACTION * local_peak)
    # Fill pinholes left by pale chromatin so the distance transform sees whole nuclei.
    foreground = cv2.morphologyEx(foreground.view(np.uint8), cv2.MORPH_CLOSE, _disk(1)).astype(bool)
    n, components = cv2.connectedComponents(foreground.view(np.uint8), connectivity=8)
    labels = components.astype(np.int32)
    if params.split and n > 1:
        labels = _split_touching(foreground, components, mpp=mpp)
    return _filter_by_area(labels, mpp=mpp, params=params)


def _split_touching(foreground, components, *, mpp):
    """Split components holding two or more seeds by a watershed of their distance transform.

    Components with one seed (or none, when too thin to hold one) are a nucleus as they are;
    the watershed runs only over the few with several seeds (under a tenth of the nuclear
    pixels on generated tiles), which keeps it off the hot path.
    """
    distance = cv2.distanceTransform(foreground.view(np.uint8), cv2.DIST_L2, 5)
    distance = cv2.GaussianBlur(distance, (0, 0), 1.0)
    # Seeds: maxima of the distance over a (2 d + 1)^2 window (as skimage's peak_local_max,
    # at a fraction of its cost), deep enough; a plateau of equal maxima is one seed.
    reach = max(1, int(round(SPLIT_MIN_DISTANCE_UM / mpp)))
    window = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * reach + 1, 2 * reach + 1))
    peaks = (distance >= cv2.dilate(distance, window)) & (distance >= SPLIT_MIN_DEPTH_UM / mpp) & foreground
    n_seeds, seeds = cv2.connectedComponents(peaks.view(np.uint8), connectivity=8)
    n_components = int(components.max()) + 1
    seed_component = np.zeros(n_seeds, dtype=np.int64)
    seed_component[seeds[peaks]] = components[peaks]
    several = np.bincount(seed_component[1:], minlength=n_components) >= 2
    several[0] = False
    split = several[components]
    labels = components.astype(np.int32)
    if split.any():
        basins = watershed(-distance, np.where(split, seeds, 0), mask=split)
        labels[split] = basins[split] + n_components  # distinct from every component id
    return labels


def _filter_by_area(labels, *, mpp, params):
    area = np.bincount(labels.ravel())
    px_area = mpp * mpp
    keep = (area * px_area >= params.min_area_um2) & (area * px_area <= params.max_area_um2)
    keep[0] = False
    new_ids = np.zeros(area.size, dtype=np.int32)
    new_ids[keep] = np.arange(1, np.count_nonzero(keep) + 1, dtype=np.int32)
    return new_ids[labels]


def expand_cells(nucleus_labels, *, mpp, expansion_um=5.0):
    """Grow each nucleus into its cell by ``expansion_um``, never into a neighbour.

    Each background pixel within the distance goes to the nearest nucleus pixel's label, as
    :func:`skimage.segmentation.expand_labels` defines it, computed with OpenCV's labelled
    distance transform (5x5 mask: distances within about 2%, so pixels on a tie or at the
    rim may differ; 99.7% of pixels agree with scikit-image on generated tiles, 6x faster).

    Returns
    -------
    (M, N) ndarray of int32
    """
    labels = np.ascontiguousarray(nucleus_labels, dtype=np.int32)
    background = (labels == 0).view(np.uint8)
    if not background.any() or background.all():
        return labels.copy()
    distance, nearest = cv2.distanceTransformWithLabels(
        background, cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # `nearest` numbers the zero pixels (nuclei) 1.. in raster order; map them to their labels.
    flat = labels.ravel()
    lookup = np.concatenate([[0], flat[flat != 0]]).astype(np.int32)
    cells = lookup[nearest]
    cells[distance > expansion_um / mpp] = 0
    return cells


def compartments(cell_labels, nucleus_labels, *, mpp, band_um=1.0):
    """Compartment codes and each cell's exposed share of its membrane band.

    A cell pixel is in the membrane band when a pixel of another cell, or a pixel outside
    every cell, lies within ``band_um`` of it (a disk); nucleus pixels stay nucleus. Band
    pixels near no other cell are "exposed".

    Parameters
    ----------
    cell_labels, nucleus_labels : (M, N) ndarray of int32
    mpp : float
    band_um : float

    Returns
    -------
    codes : (M, N) ndarray of uint8
        0 background, 1 nucleus, 2 cytoplasm, 3 membrane.
    exposed_fraction : (n + 1,) ndarray of float64
        Per label (index 0 unused): share of the band near no other cell; NaN without band.

    Notes
    -----
    The image border is not a boundary (border pixels are replicated), so cells cut by a
    tile edge get no band along it.
    """
    kernel = _disk(band_um / mpp)
    labels_f = cell_labels.astype(np.float32)  # exact for labels below 2**24
    replicate = dict(borderType=cv2.BORDER_REPLICATE)
    neighbour_above = cv2.dilate(labels_f, kernel, **replicate) != labels_f
    big = np.float32(2**24)
    nonzero_min = cv2.erode(np.where(cell_labels > 0, labels_f, big), kernel, **replicate)
    neighbour_below = nonzero_min != labels_f
    inside = cell_labels > 0
    near_outside = cv2.erode(inside.view(np.uint8), kernel, **replicate) == 0
    near_other = neighbour_above | neighbour_below
    nucleus = nucleus_labels > 0
    band = inside & ~nucleus & (near_other | near_outside)
    codes = np.full(cell_labels.shape, BACKGROUND, dtype=np.uint8)
    codes[inside] = CYTOPLASM
    codes[band] = MEMBRANE
    codes[nucleus & inside] = NUCLEUS
    n = int(cell_labels.max())
    band_count = np.bincount(cell_labels[band], minlength=n + 1)
    exposed_count = np.bincount(cell_labels[band & ~near_other], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        exposed = np.where(band_count > 0, exposed_count / band_count, np.nan)
    return codes, exposed
