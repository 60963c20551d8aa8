"""Tissue mask: where on the image there is tissue to score.

Tissue absorbs light and has structure; glass absorbs little and is flat. OD is summed over
the channels against a provisional white, the 99th percentile of each channel (a scanner's
glass is often 215-245, not 255). Where the image has glass, the glass is the sharp lowest
mode of the smoothed OD sum (:func:`glass_level`), and a pixel is tissue when its smoothed
OD sum lies ``od_threshold`` above that mode, or when its texture (the local standard
deviation of the OD sum over ``TEXTURE_SIGMA_UM``) is well above the glass's own: very pale
tissue, such as an oedematous TMA core, absorbs hardly more than glass on average (on real
HER2 cores its median OD sum lies ~0.005 above the glass) but is full of structure, and JPEG
glass with vignetting and noise reads up to ~0.08 above the 99th percentile. An image
without glass (a field inside tissue) keeps the plain rule: smoothed OD sum at or above
``od_threshold`` against the provisional white. Small fragments are dropped and small holes
filled.

The mask is coarse by design (smoothing at 2 um; in the workflow it runs on the slide overview),
so an image finer than about 1 um/px is masked at a working pixel size near 1 um: the OD sum is
block-averaged (OD, not RGB: OD is concave in intensity, and averaging RGB shrinks the mask at
thin edges), smoothed, thresholded and area-filtered there, and brought back to the input
grid by replication, except in blocks at the mask's edge, where the tissue evidence is
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

#: Window (Gaussian sigma, um) of the texture measure: a few cells, so that pale tissue with
#: sparse nuclei and fibres reads as textured throughout.
TEXTURE_SIGMA_UM = 3.0
#: The texture is that of the OD sum smoothed at this scale (um): pixel noise and the grid
#: the mask works on do not set it.
TEXTURE_FINE_UM = 1.0
#: The smoothed OD sum's lowest mode is glass when its spread (the mode minus the 16th
#: percentile below it) is at most this: glass on real cores, OS-2 lumina and the demo
#: slides 0.001-0.012; the lowest mode of fields without glass (Ki67 fields, an H&E section)
#: 0.038-0.1.
GLASS_MAX_SPREAD = 0.015
#: A candidate glass mode with more than this share of the pixels more than three spreads
#: below it is pale tissue (nothing on a slide is paler than its glass).
GLASS_MAX_PALER = 0.02
#: A candidate glass mode whose pixels' median texture exceeds this is tissue: glass on the real
#: cores, OS-2, the CMU scan, the HER2 crops and the demo slides 0.0006-0.0052; pale oedematous
#: tissue filling a crop of a real core 0.016.
GLASS_MAX_TEXTURE = 0.008
#: Search range (OD sum against the provisional white) and bin of the glass mode.
GLASS_MODE_RANGE, GLASS_MODE_BIN = 0.15, 0.002
#: Tissue texture is at least this many times the glass's median texture (real cores: glass
#: about 0.0025, pale tissue's 5th percentile 0.01-0.05), and at least TEXTURE_MIN (specks
#: and dust on glass reach 0.005-0.02).
TEXTURE_FACTOR, TEXTURE_MIN = 3.0, 0.006

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


def _threshold_and_fill(evidence, od_threshold, min_px):
    tissue = _filter_area(evidence >= od_threshold, min_px)
    holes = _filter_area(~tissue, min_px)
    return tissue | ~holes


def glass_level(smoothed, *, min_fraction, texture=None):
    """The glass mode of a smoothed OD-sum image, or None where the image shows no glass.

    Glass is the palest and flattest thing on a slide: the candidate is the highest histogram
    peak, and a peak broader than ``GLASS_MAX_SPREAD``, with more than ``GLASS_MAX_PALER`` of
    the pixels clearly below it (paler than the supposed glass), or whose pixels' median
    texture exceeds ``GLASS_MAX_TEXTURE``, is tissue, not glass; the search then goes on below
    it.

    Parameters
    ----------
    smoothed : (M, N) ndarray of float32
        OD sum against the provisional white, smoothed.
    min_fraction : float
        Smallest share of the image within the mode's spread that counts as glass.
    texture : (M, N) ndarray of float32, optional
        The texture (:func:`_texture`) of the same pixels; without it flatness is not tested.

    Returns
    -------
    (level, glass_texture) or None
        The mode (bin centre) and the median texture of the pixels within two spreads of it
        (NaN without ``texture``); the spread is the mode minus the 16th percentile of the
        values below it, at least half a bin.
    """
    counts, edges = np.histogram(smoothed, bins=int(round(GLASS_MODE_RANGE / GLASS_MODE_BIN)),
                                 range=(0.0, GLASS_MODE_RANGE))
    n_negative = int(np.count_nonzero(smoothed < 0))
    upper = counts.size
    while upper > 0 and counts[:upper].sum() >= min_fraction * smoothed.size:
        peak = int(counts[:upper].argmax())
        level = edges[peak] + GLASS_MODE_BIN / 2
        spread = np.inf if _surely_broad(counts, edges, n_negative, peak, level) else _spread(smoothed, level)
        if spread > GLASS_MAX_SPREAD:  # a broad peak is tissue
            upper = peak
            continue
        paler = np.count_nonzero(smoothed < level - 3 * spread) / smoothed.size
        near = np.abs(smoothed - level) <= 2 * spread
        glass_texture = float(np.median(texture[near])) if texture is not None and near.any() else np.nan
        flat = np.isnan(glass_texture) or glass_texture <= GLASS_MAX_TEXTURE
        if paler <= GLASS_MAX_PALER and flat:
            return (level, glass_texture) if near.mean() >= min_fraction else None
        upper = min(peak, int(np.floor((level - 3 * spread) / GLASS_MODE_BIN)))
    return None


def _spread(smoothed, level):
    """The mode ``level`` minus the 16th percentile of the values at or below it (at least half
    a bin; infinite when there are none)."""
    below = smoothed[smoothed <= level]
    return max(level - float(np.percentile(below, 16)), GLASS_MODE_BIN / 2) if below.size else np.inf


def _surely_broad(counts, edges, n_negative, peak, level):
    """Whether the histogram alone shows a peak's :func:`_spread` above ``GLASS_MAX_SPREAD``.

    At most n = (values below 0) + (counts up to the peak's bin) values lie at or below the
    level; if at least 0.16 n + 2 lie below an edge more than the maximum spread under the
    level, the 16th percentile (linear interpolation) is below that edge too. Passing over the
    pixels once per candidate peak cost most of the tissue stage on tiles without glass, where
    every peak of the tissue is a candidate in turn.
    """
    j = int(np.searchsorted(edges, level - GLASS_MAX_SPREAD, side="left")) - 1  # edges[j] < level - max spread
    if j < 0:
        return False
    n_max = n_negative + int(counts[: peak + 1].sum())
    return n_negative + int(counts[:j].sum()) >= 0.16 * n_max + 2


def _texture(od, sigma):
    """Local standard deviation of ``od`` in a Gaussian window of ``sigma`` pixels."""
    mean = cv2.GaussianBlur(od, (0, 0), sigma)
    return np.sqrt(np.maximum(cv2.GaussianBlur(od * od, (0, 0), sigma) - mean * mean, 0.0))


def _evidence(fine, smoothed, od_threshold, mpp, min_glass_fraction):
    """What is thresholded at ``od_threshold``: the smoothed OD sum where there is no glass;
    with glass, the larger of its height above the glass and the texture scaled so that the
    texture threshold meets ``od_threshold``."""
    texture = _texture(fine, TEXTURE_SIGMA_UM / mpp)
    glass = glass_level(smoothed, min_fraction=min_glass_fraction, texture=texture)
    if glass is None:
        return smoothed
    level, glass_texture = glass
    threshold = max(TEXTURE_MIN, TEXTURE_FACTOR * glass_texture)
    return np.maximum(smoothed - np.float32(level), texture * np.float32(od_threshold / threshold))


def tissue_mask(rgb, *, mpp, od_threshold=0.05, min_area_um2=2000.0, min_glass_fraction=0.01, work_mpp=WORK_MPP_UM):
    """Boolean tissue mask of an RGB brightfield image.

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
    mpp : float
        Pixel size in micrometres.
    od_threshold : float, optional
        Smoothed OD sum above the glass (against the provisional white where there is no
        glass) at or above which a pixel is tissue.
    min_area_um2 : float, optional
        Fragments smaller than this are dropped and holes smaller than this are filled.
    min_glass_fraction : float, optional
        Smallest share of glass that makes the glass rules apply (see the module notes).
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
    if (TISSUE_SIGMA_UM / mpp) ** 2 <= (factor**2 - 1) / 12:
        raise ValueError(f"working pixel size {work_mpp!r} um is coarser than the tissue smoothing allows "
                         f"(below {np.sqrt(12) * TISSUE_SIGMA_UM:.1f} um)")
    od = od_sum(rgb, provisional_white(rgb))
    if factor > 1:
        od = _block_mean(od, factor)
    smoothed = _gaussian_um(od, TISSUE_SIGMA_UM, mpp, factor)
    # Texture on the OD sum at a fixed scale, so that pixel noise and the grid do not set it.
    fine = _gaussian_um(od, TEXTURE_FINE_UM, mpp, factor)
    evidence = _evidence(fine, smoothed, od_threshold, mpp * factor, min_glass_fraction)
    coarse = _threshold_and_fill(evidence, od_threshold, max(1, int(round(min_area_um2 / (mpp * factor) ** 2))))
    return coarse if factor == 1 else _upsample_mask(coarse, evidence, factor, od_threshold, rgb.shape[:2])


def _gaussian_um(image, sigma_um, mpp, factor):
    """Gaussian smoothing of an image of ``factor`` x ``factor`` block means of ``mpp`` pixels
    to ``sigma_um`` in all: the block average already smooths by a box of variance
    (f^2 - 1) / 12 pixels^2 per axis, and the Gaussian makes up the rest (none if nothing is
    left)."""
    variance = (sigma_um / mpp) ** 2 - (factor**2 - 1) / 12
    if variance <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), np.sqrt(variance) / factor)


def _upsample_mask(coarse, evidence, factor, od_threshold, shape):
    """The block mask ``coarse`` on the input grid: replicated, except in blocks with an
    8-neighbour of the other value, where ``evidence`` is interpolated and thresholded."""
    edge = cv2.morphologyEx(coarse.view(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8),
                            borderType=cv2.BORDER_REPLICATE)
    edge_blocks = cv2.findNonZero(edge)  # (K, 1, 2) as (column, row), or None; faster than np.nonzero
    edge_blocks = np.zeros((0, 2), np.int32) if edge_blocks is None else edge_blocks.reshape(-1, 2)
    offsets, weights = _cubic_weights(factor)
    out = np.empty(shape, np.uint8)
    kernels.mask_upsample_kernel(coarse.view(np.uint8), edge_blocks, evidence, np.arange(max(shape)) // factor,
                                  offsets, weights, float(od_threshold), out)
    return out.view(bool)
