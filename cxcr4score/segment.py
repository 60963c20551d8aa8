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
import numba
import numpy as np

from ._kernels import cells as cell_kernels
from ._kernels import filters, labels as label_kernels
from ._kernels import ridges as ridge_kernels
from ._kernels.rows import row_bands, thread_bands
from .constants import MEMBRANE, Q_SCALE
from .measure import label_stats

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
#: The watershed that splits touching nuclei floods the smoothed distance transform
#: quantised to this many levels per pixel of distance: an O(1) queue per level instead of
#: a heap; pixels whose distances differ by less than 1/16 pixel are taken in arrival order.
WATERSHED_LEVELS_PER_PX = 16
#: The background opening (8 um disk) and the local peak (5 um disk) use every other row of
#: their disks: half the cost; on a generated 2048^2 tile 99.8% of nuclei match (IoU >= 0.5)
#: those of the full disks and the nucleus mask agrees on 99.7% of pixels.
MORPHOLOGY_ROW_STEP = 2
#: The background opening and the local peak run on OD quantised to uint16 steps of
#: 1 / OD_GRID_SCALE from OD_GRID_LOW (-4 to 12 OD, steps of 2.4e-4 OD; lookup-table
#: concentrations span about -3.5 to 5.1 even with stain vectors turned 15 degrees):
#: erosion and dilation commute with a monotone quantisation, so the result is the float
#: one rounded to the grid, and 16-bit lanes (twice as many a vector as float32) make the
#: filters faster.
OD_GRID_LOW, OD_GRID_SCALE = -4.0, float(2**12)
#: Gaussian kernels are cut at this many sigmas (scikit-image and OpenCV use 4; the tails
#: beyond 3 hold 0.3% of the weight): 25 -> 19 taps at the default 1.5 um / 0.5 um/px.
GAUSSIAN_TRUNCATE = 3.0
#: Range and bin (OD) of the nucleus signal's histogram whose mode is the slide's baseline.
BASELINE_RANGE, BASELINE_BIN = (-0.1, 0.3), 0.002
#: A baseline above this (OD) is a QC warning: nuclei hardly stand out from what lies between
#: them (real IHC 0.009-0.05; an H&E section 0.19, where eosin reads as hematoxylin).
BASELINE_WARNING = 0.1
#: A DAB blob narrower than this (um) is not a nucleus: the opening that finds brown nuclei
#: removes membranes (stained lines 1-2 um wide) and keeps nuclei (5-10 um across).
BROWN_MIN_WIDTH_UM = 4.0
#: A DAB blob overlapping one hematoxylin nucleus becomes part of it (the nucleus's whole brown
#: outline) only when it is at most this many times the nucleus's area: a brown nucleus is
#: about its nucleus, a cell body stained in its cytoplasm several times larger.
BROWN_MAX_GROWTH = 2.0
#: Stained membrane is located on DAB smoothed with this sigma (um) as thin lines: pixels that
#: rise above the DAB's opening by a disk of ``RIDGE_RADIUS_UM`` (lines up to about twice as
#: wide vanish in it; nuclei, cell bodies and diffuse cytoplasm stay) by at least
#: ``RIDGE_MIN_RISE`` OD and by at least ``RIDGE_MIN_CONTRAST`` times the opening's own level
#: (the chromatin texture inside a brown nucleus, +-0.15 on 0.8 OD, is not a membrane; where
#: membranes cross, the opening keeps about 60% of the line), and are a maximum across the
#: line in one of the four directions.
RIDGE_SIGMA_UM = 0.5
RIDGE_RADIUS_UM = 1.5
RIDGE_MIN_RISE = 0.04
RIDGE_MIN_CONTRAST = 0.5
#: Next to DAB ridges the hematoxylin is lowered to its opening by a disk of this radius (um):
#: a membrane line (about 1.5 um wide after blur) vanishes in it, while spindle and lymphocyte
#: nuclei (2 um wide and more) stay; with the ridges' 1.5 um disk, stromal nuclei were trimmed
#: rounder and typed tumour on generated tiles (membrane cohort: tumour F1 0.944 against 0.957).
RIDGE_HEMATOXYLIN_RADIUS_UM = 1.0
#: How far (um) DAB can change the hematoxylin that nuclei are found on, through the ridges:
#: the ridge filter (3 sigma, an opening of the disk), a pixel of crest test and of dilation,
#: and the hematoxylin's opening (pixels of at most 0.5 um).
RIDGE_REACH_UM = 3.0 * RIDGE_SIGMA_UM + 2.0 * RIDGE_RADIUS_UM + 2.0 * RIDGE_HEMATOXYLIN_RADIUS_UM + 1.0
#: A nucleus whose mean DAB is at least this (OD) is brown (a nuclear stain): its weak
#: hematoxylin outlines it only in part, and the rest of its brown would be read as cytoplasm
#: and membrane. It takes the pixels outside every nucleus within ``BROWN_OUTLINE_UM`` of it
#: (and nearer to it than to any other brown nucleus) whose smoothed DAB is at least
#: ``BROWN_OUTLINE_FRACTION`` of its own mean. A nucleus with DAB-poor chromatin (a membrane
#: or cytoplasm stain) is not grown, so a stained cell body never becomes nucleus; at 0.3 OD
#: the nuclei of CXCR4-positive lymphocytes, which read some of their stained rim, grew and
#: were typed tumour (generated infiltrated cohort tumour F1 0.952 -> 0.947; 0.951 at 0.4).
BROWN_NUCLEUS_DAB = 0.4
BROWN_OUTLINE_UM = 3.0
BROWN_OUTLINE_FRACTION = 0.3
#: Largest cell expansion (pixels) whose distances the expansion kernel's float32 keys
#: hold exactly (2 r^2 2^shift + 2 r < 2^23); 63 um at 0.5 um/px.
MAX_EXPANSION_PX = 127


@dataclass(frozen=True)
class NucleusParams:
    """Nucleus detection parameters: QuPath's positive cell detection defaults for the
    background radius, smoothing and area limits. ``threshold`` is the signal a nuclear pixel
    reaches; the workflow sets it per slide to the slide's baseline
    (:func:`signal_baseline`) plus config ``nuclei.threshold``, whose default this is."""

    background_radius_um: float = 8.0
    sigma_um: float = 1.5
    threshold: float = 0.05
    min_area_um2: float = 10.0
    max_area_um2: float = 400.0
    split: bool = True
    dab_threshold: float = 0.0
    #: The ``dab_threshold`` a slide whose stain reads nuclear gets (config
    #: ``nuclei.dab_threshold_nuclear_stain``; :mod:`cxcr4score.stain_pattern` decides);
    #: :func:`detect_nuclei` does not read it.
    dab_threshold_nuclear_stain: float = 0.3


def _disk(radius_px):
    """Euclidean disk footprint (pixels within ``radius_px`` of the centre) for OpenCV.

    The footprint of ``skimage.morphology.disk``, built here: importing skimage.morphology
    (with scipy.ndimage) took a third of a workflow job's start-up.
    """
    r = max(1, int(round(radius_px)))
    offsets = np.arange(-r, r + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= r**2).astype(np.uint8)


def _disk_filter(image, radius_px, *, take_max, row_step=1, finish=filters.FILTER_KEEP, aux=None, threshold=0.0,
                 fraction=0.0):
    """Grey dilation (``take_max``) or erosion by :func:`_disk` of an image on the OD grid.

    ``image`` is uint16 grid values (``OD_GRID_LOW``, ``OD_GRID_SCALE``) or float32 OD,
    quantised to the grid as it is read (erosion and dilation commute with the monotone
    quantisation). Equal to ``cv2.dilate`` / ``cv2.erode`` with that footprint (pixels outside
    the image ignored) on the grid values, at a cost per pixel that grows with the disk's
    height, not its area: a 16-pixel disk is several times faster than OpenCV's
    generic-footprint filter. With ``row_step`` s > 1 the footprint keeps only the disk rows
    at offsets that are multiples of s (a symmetric footprint, so an opening by it is still
    an opening: never above the image), at about 1/s of the cost.

    ``finish`` (``filters.FILTER_*``) chooses the output: the filtered grid values (uint16);
    the float32 ``aux`` minus their OD; or the foreground test of ``aux`` against ``threshold``
    and ``fraction`` of their OD (uint8 0 / 1), fused into the filter's pass.
    """
    widths = _disk_half_widths(radius_px)
    r = widths.size - 1
    offsets = np.arange(-(r // row_step) * row_step, r + 1, row_step, dtype=np.int64)
    half_widths = widths[np.abs(offsets)]
    image = np.ascontiguousarray(image)
    if image.dtype not in (np.float32, np.uint16):
        raise TypeError(f"disk filter takes float32 or uint16 images, got {image.dtype}")
    if finish != filters.FILTER_KEEP and (aux is None or np.shape(aux) != image.shape):
        got = None if aux is None else np.shape(aux)
        raise ValueError(f"this finish needs an image of shape {image.shape}, got {got}")
    out_dtype = {filters.FILTER_KEEP: np.uint16, filters.FILTER_RESIDUAL: np.float32,
                 filters.FILTER_FOREGROUND: np.uint8}[finish]
    out = np.empty(image.shape, out_dtype)
    aux = np.zeros((1, 1), np.float32) if finish == filters.FILTER_KEEP else np.ascontiguousarray(aux, np.float32)
    filters.disk_filter_kernel(image, OD_GRID_LOW, OD_GRID_SCALE, offsets, half_widths, take_max, finish, aux,
                                float(threshold), float(fraction), out, thread_bands(image.shape[0]))
    return out


def _gaussian(image, sigma_px):
    """Gaussian smoothing (OpenCV, reflected border) with a kernel cut at GAUSSIAN_TRUNCATE sigmas."""
    size = 2 * int(np.ceil(GAUSSIAN_TRUNCATE * sigma_px)) + 1
    return cv2.GaussianBlur(image, (size, size), sigma_px)


def nucleus_signal(hematoxylin, *, mpp, params=NucleusParams()):
    """Background-subtracted, smoothed hematoxylin OD on which nuclei are thresholded.

    The background is the morphological opening with a disk of ``background_radius_um``
    (every other row of it, ``MORPHOLOGY_ROW_STEP``; structures wider than the disk, such as
    diffuse counterstain or DAB bleeding into the hematoxylin channel, are removed);
    smoothing is Gaussian with ``sigma_um`` (cut at ``GAUSSIAN_TRUNCATE`` sigmas).

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
        radius = params.background_radius_um / mpp
        eroded = _disk_filter(hem, radius, take_max=False, row_step=MORPHOLOGY_ROW_STEP)
        hem = _disk_filter(eroded, radius, take_max=True, row_step=MORPHOLOGY_ROW_STEP,
                           finish=filters.FILTER_RESIDUAL, aux=hem)
    if params.sigma_um > 0:
        hem = _gaussian(hem, params.sigma_um / mpp)
    return hem


def dab_ridges(dab, *, mpp):
    """Pixels on thin lines of DAB: stained membrane located from the image itself.

    Membrane stain is a line 1-2 um wide between cells, and the boundary between expanded
    nuclei need not lie on it; ImmunoMembrane and HER2-CONNECT locate it the same way, as
    ridges of the DAB image. A ridge pixel of the smoothed DAB (``RIDGE_SIGMA_UM``) rises
    above its opening by a disk of ``RIDGE_RADIUS_UM`` (a white top-hat) by at least
    ``RIDGE_MIN_RISE`` and ``RIDGE_MIN_CONTRAST`` times the opening, and is at least as high as both of
    its neighbours along a row, a column or a diagonal (the line's crest, not its flanks).

    Parameters
    ----------
    dab : (M, N) ndarray of float32
        DAB concentration (OD units) at ``mpp``.
    mpp : float

    Returns
    -------
    (M, N) ndarray of uint8
        1 on a ridge, else 0 (0 on the image's outermost pixels).
    """
    smoothed = _gaussian(np.ascontiguousarray(dab, dtype=np.float32), RIDGE_SIGMA_UM / mpp)
    radius = RIDGE_RADIUS_UM / mpp
    rise = _disk_filter(_disk_filter(smoothed, radius, take_max=False), radius, take_max=True,
                        finish=filters.FILTER_RESIDUAL, aux=smoothed)
    out = np.zeros(smoothed.shape, np.uint8)
    if min(smoothed.shape) >= 3:
        ridge_kernels.ridge_kernel(smoothed, rise, RIDGE_MIN_RISE, RIDGE_MIN_CONTRAST, out)
    return out


def without_ridges(hematoxylin, ridges, *, mpp):
    """Hematoxylin with thin lines removed where DAB ridges are (for nucleus detection).

    Stained membrane reads partly as hematoxylin where its colour is not the DAB vector's
    (JPEG chroma subsampling greys a thin brown line; the scanner's DAB differs from the
    reference): on a HER2 2+ core the honeycomb of membranes stood out in the hematoxylin
    channel as much as the pale nuclei, and nuclei were found as whole cells bounded by it.
    On the ridges and the pixels next to them the hematoxylin is lowered to its opening by a
    disk of ``RIDGE_HEMATOXYLIN_RADIUS_UM`` (thin lines vanish, nuclei stay); elsewhere it is
    unchanged.

    Parameters
    ----------
    hematoxylin : (M, N) ndarray of float32
    ridges : (M, N) ndarray of uint8
        From :func:`dab_ridges`.
    mpp : float

    Returns
    -------
    (M, N) ndarray of float32
    """
    hem = np.ascontiguousarray(hematoxylin, dtype=np.float32)
    if ridges.shape != hem.shape:
        raise ValueError(f"ridges shape {ridges.shape} does not match hematoxylin {hem.shape}")
    if not ridges.any():
        return hem
    radius = RIDGE_HEMATOXYLIN_RADIUS_UM / mpp
    opened = _disk_filter(_disk_filter(hem, radius, take_max=False), radius, take_max=True)
    out = np.empty_like(hem)
    ridge_kernels.lower_near_ridges_kernel(hem, opened, OD_GRID_LOW, OD_GRID_SCALE,
                                           np.ascontiguousarray(ridges, dtype=np.uint8), out)
    return out


def hematoxylin_and_ridges(hematoxylin, dab, *, mpp):
    """The DAB ridges of an image and its hematoxylin without them, on which nuclei are found
    (:func:`dab_ridges`, :func:`without_ridges`).

    Returns
    -------
    hematoxylin : (M, N) ndarray of float32
    ridges : (M, N) ndarray of uint8
    """
    ridges = dab_ridges(dab, mpp=mpp)
    return without_ridges(hematoxylin, ridges, mpp=mpp), ridges


def signal_baseline(hematoxylin_tiles, *, mpp, params=NucleusParams(), masks=None):
    """The level of a slide's nucleus signal between nuclei: the mode of :func:`nucleus_signal`
    over the tissue pixels of tissue tiles.

    The background subtraction takes the local minimum of the hematoxylin OD, so where that
    is noisy (JPEG-compressed scans, hematoxylin read in DAB-rich cytoplasm) the signal between
    nuclei lies above 0: on real fields 0.009-0.025, on HER2 cores scanned to JPEG about 0.05.
    A fixed threshold either misses pale nuclei on clean scans or takes noise on noisy ones;
    the threshold is set above this level instead (per slide, never per tile).

    Parameters
    ----------
    hematoxylin_tiles : sequence of (M, N) ndarray of float32
        Hematoxylin OD of tissue tiles at ``mpp``.
    mpp : float
    params : NucleusParams
    masks : sequence of (M, N) ndarray of bool, optional
        The tissue pixels of each tile (glass in a tile would give its own, sharper mode).

    Returns
    -------
    float
        The mode (bin centre, bins of ``BASELINE_BIN``); 0.0 without tiles or values in
        ``BASELINE_RANGE``.
    """
    masks = [None] * len(hematoxylin_tiles) if masks is None else masks
    values = [nucleus_signal(tile, mpp=mpp, params=params)[mask if mask is not None else slice(None)].ravel()
              for tile, mask in zip(hematoxylin_tiles, masks) if tile.size]
    values = [v for v in values if v.size]
    if not values:
        return 0.0
    counts, edges = np.histogram(np.concatenate(values), bins=int(round(np.ptp(BASELINE_RANGE) / BASELINE_BIN)),
                                 range=BASELINE_RANGE)
    if counts.sum() == 0:  # every value outside the range: no level to measure
        return 0.0
    return float(edges[counts.argmax()] + BASELINE_BIN / 2)


def detect_nuclei(hematoxylin, *, mpp, params=NucleusParams(), dab=None):
    """Label nuclei on a hematoxylin OD image, and on DAB where nuclei are stained brown.

    Parameters
    ----------
    hematoxylin : (M, N) ndarray of float32
        Hematoxylin concentration (OD units) at ``mpp``.
    mpp : float
        Pixel size in micrometres.
    params : NucleusParams
    dab : (M, N) ndarray of float32, optional
        DAB concentration: brown nuclei take their whole brown outline (:func:`brown_outlines`)
        and, with ``params.dab_threshold`` > 0, are found on it too (see Notes).

    Returns
    -------
    labels : (M, N) ndarray of int32
        0 background, 1..n nuclei (numbered by the splitting, not in raster order).

    Notes
    -----
    A pixel is nuclear when the signal is at or above ``params.threshold`` and at or above
    half of the highest signal within ``OUTLINE_WINDOW_UM`` (the nucleus edge at half
    maximum; the highest signal on the OD grid, over every other row of the disk, as the
    background in :func:`nucleus_signal`).

    A nucleus stained by DAB (a nuclear antigen, or nuclear CXCR4) has weak hematoxylin and
    is seen on hematoxylin in part or not at all. DAB smoothed as the hematoxylin is, at or
    above ``params.dab_threshold`` and half its local peak, opened by a disk of
    ``BROWN_MIN_WIDTH_UM`` (stained membranes, 1-2 um lines, vanish; nuclei stay), gives
    brown blobs. A blob that meets no hematoxylin nucleus is a nucleus; a blob that meets
    one, at most ``BROWN_MAX_GROWTH`` times its area, joins it (the nucleus's whole brown
    outline); a larger blob (a cell body stained in its cytoplasm) or one over several nuclei
    is left out, so cytoplasmic and membrane DAB never becomes a nucleus.

    Touching nuclei are split by a watershed of the distance transform of the mask, seeded
    at its maxima at least ``SPLIT_MIN_DISTANCE_UM`` apart and ``SPLIT_MIN_DEPTH_UM`` deep.
    Nuclei outside the area limits are dropped after splitting; then, with ``dab``, brown
    nuclei are grown to their brown outline (:func:`brown_outlines`).
    """
    if mpp <= 0:
        raise ValueError(f"pixel size must be positive, got {mpp!r}")
    if hematoxylin.size == 0:
        return np.zeros(hematoxylin.shape, np.int32)
    foreground = _foreground(nucleus_signal(hematoxylin, mpp=mpp, params=params), params.threshold, mpp=mpp)
    # Fill pinholes left by pale chromatin so the distance transform sees whole nuclei.
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_CLOSE, _disk(1))
    if dab is not None and params.dab_threshold > 0:
        foreground |= _brown_nuclei(foreground, dab, mpp=mpp, params=params)
    n, labels = cv2.connectedComponents(foreground, connectivity=8)
    areas, boxes = label_stats(labels, n)
    if params.split and n > 1:
        areas = _split_touching(foreground, labels, areas, boxes, mpp=mpp)
    labels = _filter_by_area(labels, areas, mpp=mpp, params=params)
    return labels if dab is None else brown_outlines(labels, dab, mpp=mpp, sigma_um=params.sigma_um)


def brown_outlines(labels, dab, *, mpp, sigma_um):
    """Brown nuclei grown to their whole brown outline (see ``BROWN_NUCLEUS_DAB``).

    On the OS-2 Ki67 scan, read at the CXCR4 default compartments (membrane and cytoplasm),
    the rims of dark brown nuclei outside their hematoxylin outline made 16% of cells positive
    (5.1% with this), on a stain that is purely nuclear.

    Parameters
    ----------
    labels : (M, N) ndarray of int32
        Nuclei 1..n.
    dab : (M, N) ndarray of float32
        DAB concentration (OD).
    mpp : float
    sigma_um : float
        Smoothing of the DAB that the outline is taken on (the nucleus signal's).

    Returns
    -------
    (M, N) ndarray of int32
        ``labels`` with background pixels taken by brown nuclei.
    """
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    n = int(labels.max(initial=0))
    if n == 0:
        return labels
    dab = np.ascontiguousarray(dab, dtype=np.float32)
    bands = thread_bands(labels.shape[0])
    counts = np.zeros((numba.get_num_threads(), n + 1), np.int64)
    sums = np.zeros_like(counts)
    label_kernels.label_sums_kernel(labels, dab, Q_SCALE, bands, counts, sums)
    counts, sums = counts.sum(axis=0), sums.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / (Q_SCALE * counts), 0.0)
    brown = mean >= BROWN_NUCLEUS_DAB
    brown[0] = False
    if not brown.any():
        return labels
    # The nearest brown nucleus, blue ones ignored: a brown rim next to a blue neighbour is
    # still the brown nucleus's (the blue one's own pixels are never taken).
    brown_only = np.empty_like(labels)
    label_kernels.relabel_kernel(labels, np.where(brown, np.arange(n + 1), 0).astype(np.int32), brown_only)
    nearest = expand_cells(brown_only, mpp=mpp, expansion_um=BROWN_OUTLINE_UM)
    smoothed = _gaussian(dab, sigma_um / mpp) if sigma_um > 0 else dab
    out = np.empty_like(labels)
    label_kernels.take_where_kernel(labels, nearest, smoothed, (BROWN_OUTLINE_FRACTION * mean).astype(np.float32), out)
    return out


def _foreground(signal, threshold, *, mpp):
    """Pixels of a smoothed signal at or above ``threshold`` and half its local peak (uint8 0 / 1)."""
    return _disk_filter(signal, OUTLINE_WINDOW_UM / mpp, take_max=True, row_step=MORPHOLOGY_ROW_STEP,
                        finish=filters.FILTER_FOREGROUND, aux=signal, threshold=threshold, fraction=OUTLINE_FRACTION)


def _brown_nuclei(foreground, dab, *, mpp, params):
    """The brown blobs that are nuclei or a nucleus's whole outline (uint8 0 / 1; see
    :func:`detect_nuclei`)."""
    smoothed = _gaussian(np.ascontiguousarray(dab, dtype=np.float32), params.sigma_um / mpp) if params.sigma_um > 0 \
        else np.ascontiguousarray(dab, dtype=np.float32)
    brown = cv2.morphologyEx(_foreground(smoothed, params.dab_threshold, mpp=mpp), cv2.MORPH_OPEN,
                             _disk(BROWN_MIN_WIDTH_UM / 2 / mpp))
    n_blobs, blobs = cv2.connectedComponents(brown, connectivity=8)
    if n_blobs <= 1:
        return np.zeros_like(foreground)
    _, nuclei = cv2.connectedComponents(foreground, connectivity=8)
    blob_area = np.bincount(blobs.ravel(), minlength=n_blobs)
    both = (blobs > 0) & (nuclei > 0)
    stride = np.int64(nuclei.max()) + 1
    pairs = np.unique(blobs[both].astype(np.int64) * stride + nuclei[both])  # (blob, nucleus) that meet
    blob_of, nucleus_of = pairs // stride, pairs % stride
    n_met = np.bincount(blob_of, minlength=n_blobs)
    met = np.zeros(n_blobs, np.int64)
    met[blob_of] = nucleus_of  # the nucleus of a blob that meets one
    nucleus_area = np.bincount(nuclei.ravel(), minlength=int(stride))
    px = mpp * mpp
    keep = (blob_area * px >= params.min_area_um2) & (blob_area * px <= params.max_area_um2)
    keep &= (n_met == 0) | ((n_met == 1) & (blob_area <= BROWN_MAX_GROWTH * nucleus_area[met]))
    keep[0] = False
    return keep.astype(np.uint8)[blobs]


def _split_touching(foreground, labels, areas, boxes, *, mpp):
    """Split components holding two or more seeds by a watershed of their distance transform.

    Components with one seed (or none, when too thin to hold one) are a nucleus as they are;
    the watershed runs only over the few with several seeds (under a tenth of the nuclear
    pixels on generated tiles), on their bounding boxes only, which keeps it off the hot path.

    Parameters
    ----------
    foreground : (M, N) ndarray of uint8
        0 / 1 mask.
    labels : (M, N) ndarray of int32
        Its 8-connected components 1..n - 1; split components' pixels are relabelled in
        place to their basin's seed number plus n.
    areas, boxes : (n,) and (n, 4) ndarray of int64
        Pixel count and bounding box of each component (:func:`cxcr4score.measure.label_stats`).

    Returns
    -------
    (n + n_seeds + 1,) ndarray of int64
        The pixel count of every label after the split (a split component counts the
        pixels no seed reached, which keep its id).
    """
    distance, seed_pixels, seed_ids = _split_seeds(foreground, mpp=mpp)
    n_components = areas.size
    seed_component = np.zeros(int(seed_ids.max(initial=0)) + 1, dtype=np.int64)
    seed_component[seed_ids] = labels.reshape(-1)[seed_pixels]
    several = np.bincount(seed_component[1:], minlength=n_components) >= 2
    several[0] = False
    to_split = np.flatnonzero(several)
    basin_areas = np.zeros(seed_component.size, np.int64)
    if to_split.size == 0:
        return np.concatenate([areas, basin_areas])
    # A watershed per component, on its box (components are 8-separated and the flooding
    # 4-connected, so each floods only itself). Pixels no seed reaches (joined to the rest
    # only diagonally) keep their component's id.
    slot = np.full(n_components, -1, np.int64)
    slot[to_split] = np.arange(to_split.size)
    placed = slot[seed_component[seed_ids]]
    mine = np.flatnonzero(placed >= 0)
    order = mine[np.argsort(placed[mine], kind="stable")]  # by component, raster order within
    seed_first = np.searchsorted(placed[order], np.arange(to_split.size + 1))
    areas = areas.copy()
    areas[to_split] = 0
    label_kernels.split_boxes_kernel(labels, distance, to_split.astype(np.int64), boxes, seed_first, seed_pixels[order],
                                seed_ids[order], float(WATERSHED_LEVELS_PER_PX), n_components, areas, basin_areas)
    return np.concatenate([areas, basin_areas])


def _split_seeds(foreground, *, mpp):
    """Smoothed distance transform of the mask, its seed pixels and the seeds' numbers.

    Seeds are maxima of the distance over a (2 d + 1)^2 window (as skimage's
    ``peak_local_max``, at a fraction of its cost) at least ``SPLIT_MIN_DEPTH_UM`` deep;
    a plateau of equal maxima is one seed (8-connected).

    Returns
    -------
    distance : (M, N) ndarray of float32
    seed_pixels : (k,) ndarray of int64
        Raveled indices of the seed pixels, in raster order.
    seed_ids : (k,) ndarray of int32
        The seed (1..) each belongs to.
    """
    distance = cv2.distanceTransform(foreground, cv2.DIST_L2, 5)
    distance = _gaussian(distance, 1.0)
    reach = max(1, int(round(SPLIT_MIN_DISTANCE_UM / mpp)))
    seeds = np.empty(foreground.shape, np.uint8)
    row_counts = np.empty(foreground.shape[0], np.int64)
    filters.seed_mask_kernel(distance, reach, SPLIT_MIN_DEPTH_UM / mpp, foreground,
                              thread_bands(foreground.shape[0]), seeds, row_counts)
    seed_pixels, seed_ids = label_kernels.seed_groups_kernel(seeds, row_counts)
    return distance, seed_pixels, seed_ids


def _filter_by_area(labels, areas, *, mpp, params):
    """``labels`` renumbered 1.. in label order, in place, dropping those outside the area limits."""
    px_area = mpp * mpp
    keep = (areas * px_area >= params.min_area_um2) & (areas * px_area <= params.max_area_um2)
    keep[0] = False
    new_ids = np.zeros(areas.size, dtype=np.int32)
    new_ids[keep] = np.arange(1, np.count_nonzero(keep) + 1, dtype=np.int32)
    label_kernels.relabel_kernel(labels, new_ids, labels)
    return labels


def expand_cells(nucleus_labels, *, mpp, expansion_um=5.0):
    """Grow each nucleus into its cell by ``expansion_um``, never into a neighbour.

    Each background pixel within the distance goes to the nearest nucleus pixel's label,
    exactly as :func:`skimage.segmentation.expand_labels` (the same pixel on ties), by a
    separable Euclidean distance transform truncated at the distance (hand-written: neither
    scipy's nor OpenCV's transform can stop there, and OpenCV's labelled one is approximate).

    Returns
    -------
    (M, N) ndarray of int32
    """
    labels = np.ascontiguousarray(nucleus_labels, dtype=np.int32)
    if not mpp > 0:
        raise ValueError(f"pixel size must be positive, got {mpp!r}")
    if not expansion_um >= 0:
        raise ValueError(f"cell expansion must be non-negative, got {expansion_um!r} um")
    limit = expansion_um / mpp
    reach = int(np.floor(limit))
    shift = (2 * reach).bit_length()
    if (2 * reach * reach << shift) + 2 * reach >= 2**23:  # the kernel's float32 keys stay exact
        raise ValueError(f"cell expansion of {limit:g} px is too large (at most {MAX_EXPANSION_PX} px)")
    # Largest squared distance d2 with sqrt(d2) <= limit in float64, as scikit-image compares.
    max_d2 = reach * reach
    while np.sqrt(np.float64(max_d2 + 1)) <= limit:
        max_d2 += 1
    cells = np.empty_like(labels)
    cell_kernels.expand_labels_kernel(labels, reach, max_d2, shift, row_bands(labels.shape[0], 64), cells)
    return cells


def compartments(cell_labels, nucleus_labels, *, mpp, band_um=1.0, capture_um=0.0, ridges=None):
    """Compartment codes and each cell's exposed share of its membrane band.

    A cell pixel is in the membrane band when a pixel of another cell, or a pixel outside
    every cell, lies within ``band_um`` of it (a disk); nucleus pixels stay nucleus. Band
    pixels near no other cell are "exposed".

    With ``capture_um`` above ``band_um``, the cytoplasm pixels within ``capture_um -
    band_um`` of the band form the membrane capture ring (code 4): cytoplasm, except where
    the stained membrane lies in it. Band and ring pixels on a DAB ridge (``ridges``, from
    :func:`dab_ridges`) get codes 5 and 6: the membrane located from the image, which
    :func:`cxcr4score.measure.measure_cells` reads where it is, beside a cell boundary that
    nucleus expansion placed up to ``capture_um`` off the stained line.

    Parameters
    ----------
    cell_labels, nucleus_labels : (M, N) ndarray of int32
    mpp : float
    band_um : float
    capture_um : float, optional
        Outer width of the capture ring (0: no ring).
    ridges : (M, N) ndarray of uint8, optional
        DAB ridge pixels (1); none when not given.

    Returns
    -------
    codes : (M, N) ndarray of uint8
        0 background, 1 nucleus, 2 cytoplasm, 3 membrane band, 4 capture ring, 5 band and 6 ring
        on a DAB ridge.
    exposed_fraction : (n + 1,) ndarray of float64
        Per label (index 0 unused): share of the band near no other cell; NaN without band.

    Notes
    -----
    The image border is not a boundary (border pixels are replicated), so cells cut by a
    tile edge get no band along it.
    """
    cells = np.ascontiguousarray(cell_labels, dtype=np.int32)
    if nucleus_labels.shape != cells.shape:
        raise ValueError(f"nucleus labels shape {nucleus_labels.shape} does not match cells {cells.shape}")
    nuclei = np.ascontiguousarray(nucleus_labels)
    if cells.size == 0:
        return np.zeros(cells.shape, np.uint8), np.full(1, np.nan)
    # The ring: the next (capture - band) of cytoplasm inside the band, the band dilated by a
    # disk (it cannot reach another cell's cytoplasm, whose own band lies in between).
    ring_px = (capture_um - band_um) / mpp if capture_um > band_um else None
    codes, counts = _band_codes(cells, nuclei, band_um / mpp, ring_px)
    if ridges is not None:
        if ridges.shape != cells.shape:
            raise ValueError(f"ridges shape {ridges.shape} does not match cells {cells.shape}")
        # Band (3) -> 5 and ring (4) -> 6 on a ridge.
        codes += ((codes >= MEMBRANE) & (ridges != 0)).view(np.uint8) << np.uint8(1)
    band_count, exposed_count = counts.sum(axis=0).T
    with np.errstate(invalid="ignore", divide="ignore"):
        exposed = np.where(band_count > 0, exposed_count / band_count, np.nan)
    return codes, exposed


def _band_codes(cells, nuclei, radius_px, ring_px=None):
    """Codes 0-4 with a band of ``radius_px`` and a ring of ``ring_px`` (None: no ring), and
    per-(thread, cell) band / exposed counts."""
    n = int(cells.max(initial=0))
    if n >= 2**24:  # the kernel compares labels as float32
        raise ValueError(f"{n} cells in one image: at most 2**24 - 1 can be compartmented")
    codes = np.empty(cells.shape, dtype=np.uint8)
    counts = np.zeros((numba.get_num_threads(), n + 1, 2), dtype=np.int64)
    ring = np.zeros(1, np.int64) if ring_px is None else _disk_half_widths(ring_px)
    bands = row_bands(cells.shape[0], 64)
    cell_kernels.compartments_kernel(cells, nuclei, _disk_half_widths(radius_px), ring, bands, codes, counts)
    return codes, counts


def _disk_half_widths(radius_px):
    """Half-width of each row of :func:`_disk` at vertical offset 0, 1, ..., r, as int64."""
    footprint = _disk(radius_px)
    r = footprint.shape[0] // 2
    return ((footprint[r:].sum(axis=1) - 1) // 2).astype(np.int64)


def segment_cells(hematoxylin, dab, *, mpp, config, baseline=0.0, dab_threshold=None):
    """Nuclei (on hematoxylin without DAB ridges, and on DAB where nuclei are brown), cells and
    compartments (the membrane located on DAB ridges) of one image at analysis resolution;
    nuclei are thresholded at ``baseline`` (the slide's, :func:`signal_baseline`) plus config
    ``nuclei.threshold``.

    Parameters
    ----------
    hematoxylin, dab : (M, N) ndarray of float32
    mpp : float
    config : dict
        Effective configuration.
    baseline : float, optional
    dab_threshold : float, optional
        The slide's DAB threshold for brown nuclei (see
        :func:`cxcr4score.stain_pattern.nucleus_dab_threshold`); config
        ``nuclei.dab_threshold`` when not given.

    Returns
    -------
    nuclei, cells : (M, N) ndarray of int32
    codes : (M, N) ndarray of uint8
    exposed_fraction : (n + 1,) ndarray of float64
    """
    settings = config["nuclei"]
    params = NucleusParams(**{**settings, "threshold": baseline + settings["threshold"],
                              "dab_threshold": settings["dab_threshold"] if dab_threshold is None else dab_threshold})
    hematoxylin, ridges = hematoxylin_and_ridges(hematoxylin, dab, mpp=mpp)
    nuclei = detect_nuclei(hematoxylin, mpp=mpp, params=params, dab=dab)
    cells = expand_cells(nuclei, mpp=mpp, expansion_um=config["cell_expansion_um"])
    codes, exposed = compartments(cells, nuclei, mpp=mpp, band_um=config["membrane_band_um"],
                                  capture_um=config["membrane_capture_um"], ridges=ridges)
    return nuclei, cells, codes, exposed
