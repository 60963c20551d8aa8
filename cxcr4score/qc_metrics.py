"""Slide quality metrics and their warning / failed levels (config ``qc``).

Each metric is a pure function of pixels or cells; :func:`evaluate` compares the values with
the configured levels and names every metric that fired, with its value and level. The
worst level is the slide's ``qc_status``; a failed slide is excluded from its patient's call
(:mod:`cxcr4score.eligibility`). The levels are set from the demo cohort and the real slides
in the README's QC table: no H-DAB slide among them fails.
"""

from __future__ import annotations

import cv2
import numpy as np

#: QC levels from best to worst.
QC_ORDER = ("ok", "warning", "failed")
#: Metrics where a SMALL value is bad; all others are bad when large.
LOW_IS_BAD = frozenset({"tissue_mm2", "tumour_cells"})
#: How each metric is named in QC messages.
LABELS = {
    "tissue_mm2": "tissue area {:.3g} mm2",
    "tumour_cells": "{:.0f} tumour cells",
    "blurred_tiles": "{:.0%} of sampled tissue tiles out of focus",
    "saturated": "{:.2%} of tissue pixels saturated",
    "pen": "{:.2%} of tissue under pen ink",
    "folds": "{:.2%} of tissue folded or very dark",
    "stain_angle_deg": "stain vectors estimated {:.1f} deg from the reference",
    "second_stain_deg": "no DAB-like stain; a second stain {:.1f} deg out of the hematoxylin-DAB plane (H&E?)",
    "stroma_dab": "stroma DAB {:.3f} OD (nonspecific staining?)",
}
#: Side of the analysis-resolution tiles whose focus is measured (pixels; 128 um at 0.5 um/px).
FOCUS_TILE_PX = 256
#: At most this many tissue tiles are read for the focus measure.
FOCUS_MAX_TILES = 16
#: A pixel at least this bright in every channel is glass, not a clipped stained pixel.
SATURATED_GLASS = 235
#: OD norm below which a pixel's hue is too uncertain to call it ink.
PEN_MIN_OD = 0.3
#: A hue this far (deg) outside the hematoxylin-DAB cone is ink: a drawn green stroke is 3% of
#: the demo tile at this angle, no H-DAB slide here reaches 0.4% (README QC table).
PEN_ANGLE_DEG = 25.0
#: A channel OD this high in all three channels is black (ink or debris); hematoxylin or DAB
#: would need a concentration above 3 OD to reach it.
BLACK_OD = 1.0
#: Smoothing of the OD sum before the fold threshold (micrometres): folds are regions, not nuclei.
FOLD_SIGMA_UM = 10.0
#: Smoothed OD sum of a fold (two or more tissue layers): the darkest H-DAB region among the real
#: and demo slides reaches 1.28, dense H&E 2.1.
FOLD_OD_SUM = 1.6


def sharpness(grey):
    """Variance of the 3x3 Laplacian over the variance of the image (contrast-free focus).

    The variance of the Laplacian (Pech-Pacheco et al. 2000) scales with the square of the
    contrast, so a pale but sharp scan reads like a blurred one (the demo tile at half
    contrast: 4x lower); dividing by the grey variance removes the contrast and keeps the loss
    of fine detail that blur causes (demo and real slides: >= 0.084 on every sampled tile;
    the demo blurred with sigma 1 px: 0.04, 1.5 px: 0.017).

    Parameters
    ----------
    grey : (M, N) ndarray
        Intensities (any scale; 8-bit grey here).

    Returns
    -------
    float
        0 for a flat image.
    """
    grey = np.asarray(grey, np.float32)
    spread = float(grey.var())
    if spread == 0:
        return 0.0
    return float(cv2.Laplacian(grey, cv2.CV_32F, ksize=1).var()) / spread


def focus_tiles(mask, *, overview_scale, shape, tile_px=FOCUS_TILE_PX, max_tiles=FOCUS_MAX_TILES):
    """Analysis-grid boxes of up to ``max_tiles`` tiles that are mostly tissue, spread evenly.

    Parameters
    ----------
    mask : (P, Q) ndarray of bool
        Tissue mask on the overview.
    overview_scale : float
        Analysis pixels per overview pixel.
    shape : (int, int)
        Analysis grid shape.

    Returns
    -------
    list of (top, left, bottom, right)
    """
    boxes = []
    for top in range(0, shape[0] - tile_px + 1, tile_px):
        for left in range(0, shape[1] - tile_px + 1, tile_px):
            r0, c0 = int(top / overview_scale), int(left / overview_scale)
            r1 = max(r0 + 1, int((top + tile_px) / overview_scale))
            c1 = max(c0 + 1, int((left + tile_px) / overview_scale))
            window = mask[r0:r1, c0:c1]  # empty where rounding puts it past the overview's edge
            if window.size and window.mean() >= 0.5:
                boxes.append((top, left, top + tile_px, left + tile_px))
    if len(boxes) > max_tiles:
        boxes = [boxes[i] for i in np.linspace(0, len(boxes) - 1, max_tiles).round().astype(int)]
    return boxes


def focus_scores(tiles):
    """:func:`sharpness` of the grey image of each RGB tile (higher is sharper).

    Parameters
    ----------
    tiles : sequence of (M, N, 3) ndarray of uint8

    Returns
    -------
    list of float
    """
    return [sharpness(cv2.cvtColor(t, cv2.COLOR_RGB2GRAY)) for t in tiles]


def blurred_share(scores, *, min_sharpness):
    """Share of tiles whose focus score (:func:`focus_scores`) is below ``min_sharpness``.

    Parameters
    ----------
    scores : sequence of float
    min_sharpness : float

    Returns
    -------
    float
        0 without tiles.
    """
    if not len(scores):
        return 0.0
    return float(np.mean(np.asarray(scores) < min_sharpness))


def saturated_share(pixels, *, glass_value=SATURATED_GLASS):
    """Share of (tissue) pixels clipped by the scanner: a channel at 0, or at 255 while another
    channel is stained.

    A pixel at 255 in every channel (or bright in every channel) is glass, not clipping:
    scanners that write glass as 255 would otherwise count the glass in fat vacuoles and at
    tissue edges, which the tissue mask holds, as saturated tissue.

    Parameters
    ----------
    pixels : (K, 3) ndarray of uint8
    glass_value : int
        A pixel whose every channel is at least this bright is glass.

    Returns
    -------
    float
        0 without pixels.
    """
    if not len(pixels):
        return 0.0
    clipped = (pixels == 0).any(axis=1) | ((pixels == 255).any(axis=1) & (pixels < glass_value).any(axis=1))
    return float(np.mean(clipped))


def pen_share(od, vectors, *, max_angle_deg=PEN_ANGLE_DEG):
    """Share of (tissue) pixels coloured like no stain in use: pen ink (green, blue, black).

    A pixel is ink if it is black (OD >= :data:`BLACK_OD` in every channel) or if its OD,
    with negative stain amounts set to zero, is rebuilt from the stains only with a
    direction error above ``max_angle_deg`` (hues outside the cone of the stains).

    Parameters
    ----------
    od : (K, 3) ndarray
        Per-channel optical density of the pixels.
    vectors : (2, 3) ndarray
        Hematoxylin and DAB directions in use. A third stain (eosin) counts as off-hue, so an
        H&E slide scores here as well as on ``second_stain_deg``.
    max_angle_deg : float, optional

    Returns
    -------
    float
    """
    if not len(od):
        return 0.0
    od = np.asarray(od, np.float64)
    vectors = np.asarray(vectors, np.float64)
    black = (od >= BLACK_OD).all(axis=1)
    rebuilt = np.clip(od @ np.linalg.pinv(vectors), 0, None) @ vectors
    norm = np.linalg.norm(od, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (od * rebuilt).sum(axis=1) / (norm * np.linalg.norm(rebuilt, axis=1))
    off_hue = (norm >= PEN_MIN_OD) & ~(cos >= np.cos(np.radians(max_angle_deg)))
    return float(np.mean(black | off_hue))


def fold_share(od_sum, mask, *, mpp, level=FOLD_OD_SUM):
    """Share of tissue pixels whose OD sum, smoothed over :data:`FOLD_SIGMA_UM`, is >= ``level``.

    Parameters
    ----------
    od_sum : (M, N) ndarray
        Optical density summed over the channels (:func:`cxcr4score.tissue.od_sum`).
    mask : (M, N) ndarray of bool
    mpp : float
    level : float, optional
    """
    if not mask.any():
        return 0.0
    smoothed = cv2.GaussianBlur(np.asarray(od_sum, np.float32), (0, 0), FOLD_SIGMA_UM / mpp)
    return float(np.mean(smoothed[mask] >= level))


def stroma_dab(cells):
    """Median cell DAB of the stroma cells (nonspecific background), NaN without stroma cells."""
    stroma = cells.loc[cells["cell_type"] == "stroma", "dab_cell"].dropna()
    return float(stroma.median()) if len(stroma) else float("nan")


def slide_metrics(pixel_qc, *, tissue_mm2, tumour_cells, region_cells, min_sharpness):
    """A slide's QC metric values, in the order :func:`evaluate` reports them.

    Parameters
    ----------
    pixel_qc : dict
        The pixel metrics measured by slide_info (``focus_scores`` and the shares).
    tissue_mm2 : float
    tumour_cells : int
        Scored cells.
    region_cells : pandas.DataFrame
        The cells of the scored region, with ``cell_type`` and ``dab_cell`` (for
        :func:`stroma_dab`).
    min_sharpness : float
        Config ``qc.focus_min_sharpness`` (for :func:`blurred_share`).

    Returns
    -------
    dict
        ``tissue_mm2``, ``tumour_cells``, ``blurred_tiles``, the pixel shares and angles, and
        ``stroma_dab``.
    """
    shares = {k: v for k, v in pixel_qc.items() if k != "focus_scores"}
    blurred = blurred_share(pixel_qc["focus_scores"], min_sharpness=min_sharpness)
    return {"tissue_mm2": tissue_mm2, "tumour_cells": float(tumour_cells), "blurred_tiles": blurred, **shares,
            "stroma_dab": stroma_dab(region_cells)}


def worst_status(*statuses):
    """The worst of QC statuses (``ok`` < ``warning`` < ``failed``)."""
    return max(statuses, key=QC_ORDER.index)


def evaluate(values, levels):
    """QC status and messages of a slide's metric values.

    Parameters
    ----------
    values : dict
        Metric name -> value (NaN is skipped).
    levels : dict
        Metric name -> ``{"warning": x, "failed": y}`` (config ``qc``).

    Returns
    -------
    status : str
        ``"ok"``, ``"warning"`` or ``"failed"``.
    messages : list of str
        One per metric that fired, e.g. ``"40% of sampled tissue tiles out of focus (failed >= 30%)"``.
    """
    status, messages = "ok", []
    for name, value in values.items():
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        low = name in LOW_IS_BAD
        for level in ("failed", "warning"):
            limit = levels[name][level]
            if (value < limit) if low else (value >= limit):
                sign = "<" if low else ">="
                messages.append(f"{LABELS[name].format(value)} ({level} {sign} {format_value(name, limit)})")
                status = level if level == "failed" or status == "ok" else status
                break
    return status, messages


def describe_levels(name, levels):
    """The warning and failed levels of metric ``name``, e.g. ``"warning >= 25%, failed >= 50%"``."""
    sign = "<" if name in LOW_IS_BAD else ">="
    return ", ".join(f"{level} {sign} {format_value(name, levels[name][level])}" for level in ("warning", "failed"))


def format_value(name, limit):
    """A value or level of metric ``name`` in the metric's own format, e.g. 30% or 0.05."""
    spec = LABELS[name][LABELS[name].index("{"): LABELS[name].index("}") + 1]
    return spec.format(limit)
