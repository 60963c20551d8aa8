"""QC pictures a pathologist can check by eye.

One PNG per slide: left, a thumbnail with the tissue outline (green), the ROI outline (cyan)
and every cell as a dot coloured by its class; right, a full-resolution crop of the densest
region with each cell ringed in its class colour. A legend names the colours and the slide's
QC status.
"""

from __future__ import annotations

import cv2
import numpy as np

from .tables import write_bytes

#: Class colours (RGB): 0 blue, 1+ yellow, 2+ orange, 3+ red (the usual IHC scoring palette).
CLASS_COLOURS = ((60, 110, 255), (255, 215, 0), (255, 130, 0), (220, 0, 0))
TISSUE_COLOUR = (0, 170, 0)
ROI_COLOUR = (0, 200, 220)
#: Longest side of the thumbnail and side of the full-resolution crop, in pixels.
THUMBNAIL_PX = 900
CROP_PX = 600


def _class_name(k):
    return f"{k}+" if k else "0"


def _scaled(rgb, factor):
    size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _outline(canvas, mask, colour):
    small = cv2.resize(mask.astype(np.uint8), (canvas.shape[1], canvas.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(small, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, colour, 2)


def densest_window(x, y, shape, side=CROP_PX):
    """Top-left corner of the ``side`` square of an image of ``shape`` holding most cells.

    ``x``, ``y`` are cell positions in the image's pixels (coarse 2-D histogram of half-side
    bins, so the answer is within a quarter of a side of the best).
    """
    if len(x) == 0:
        return 0, 0
    step = max(1, side // 2)
    rows = np.clip((np.asarray(y) // step).astype(int), 0, None)
    cols = np.clip((np.asarray(x) // step).astype(int), 0, None)
    grid = np.zeros((rows.max() + 2, cols.max() + 2))
    np.add.at(grid, (rows, cols), 1)
    window = grid[:-1, :-1] + grid[1:, :-1] + grid[:-1, 1:] + grid[1:, 1:]
    r, c = np.unravel_index(np.argmax(window), window.shape)
    top = int(min(r * step, max(0, shape[0] - side)))
    left = int(min(c * step, max(0, shape[1] - side)))
    return top, left


def _legend(canvas, lines):
    for row, text in enumerate(lines):
        cv2.putText(canvas, text, (10, 22 + 22 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (30, 30, 30), 1, cv2.LINE_AA)


def qc_picture(overview, *, overview_scale, crop, crop_origin, cell_x, cell_y, cell_class, cell_radius,
               tissue_mask=None, roi_mask=None, title=""):
    """Compose the QC picture of one slide.

    Parameters
    ----------
    overview : (P, Q, 3) ndarray of uint8
        The whole slide at low resolution.
    overview_scale : float
        Analysis pixels per overview pixel.
    crop : (R, S, 3) ndarray of uint8
        A region at analysis resolution (the densest, see :func:`densest_window`).
    crop_origin : (int, int)
        Its top-left corner in analysis pixels.
    cell_x, cell_y : (K,) array_like
        Cell centroids in analysis pixels.
    cell_class : (K,) array_like of int
        Scored class 0..3 of each cell (other values: not scored, not drawn).
    cell_radius : (K,) array_like
        Radius of each cell in analysis pixels (for the rings of the crop).
    tissue_mask, roi_mask : (P, Q) ndarray of bool, optional
        On the overview grid.
    title : str
        First legend line (slide id, QC status).

    Returns
    -------
    (H, W, 3) ndarray of uint8
        RGB picture.
    """
    x, y = np.asarray(cell_x, float), np.asarray(cell_y, float)
    classes, radius = np.asarray(cell_class, int), np.asarray(cell_radius, float)
    shrink = min(1.0, THUMBNAIL_PX / max(overview.shape[:2]))
    thumb = _scaled(overview, shrink).copy()
    factor = shrink / overview_scale  # thumbnail px per analysis px
    if tissue_mask is not None:
        _outline(thumb, tissue_mask, TISSUE_COLOUR)
    if roi_mask is not None:
        _outline(thumb, roi_mask, ROI_COLOUR)
    top, left = crop_origin
    crop = crop.copy()
    dot = max(1, round(4 * factor))
    for k, colour in enumerate(CLASS_COLOURS):
        for xi, yi, ri in zip(x[classes == k], y[classes == k], radius[classes == k]):
            cv2.circle(thumb, (round(xi * factor), round(yi * factor)), dot, colour, -1)
            cx, cy = round(xi) - left, round(yi) - top
            if 0 <= cx < crop.shape[1] and 0 <= cy < crop.shape[0]:
                cv2.circle(crop, (cx, cy), max(2, round(ri)), colour, 1, cv2.LINE_AA)
    cv2.rectangle(thumb, (round(left * factor), round(top * factor)),
                  (round((left + crop.shape[1]) * factor), round((top + crop.shape[0]) * factor)), (0, 0, 0), 1)
    height = max(thumb.shape[0], crop.shape[0])
    canvas = np.full((height + 120, thumb.shape[1] + crop.shape[1] + 10, 3), 255, dtype=np.uint8)
    canvas[120 : 120 + thumb.shape[0], : thumb.shape[1]] = thumb
    canvas[120 : 120 + crop.shape[0], thumb.shape[1] + 10 :] = crop
    counts = np.bincount(classes[(classes >= 0) & (classes <= 3)], minlength=4)
    _legend(canvas, [
        title,
        "tissue outline green, ROI cyan; right: densest region at full resolution",
        "scored cells per class: " + ", ".join(f"{_class_name(k)} {n}" for k, n in enumerate(counts)),
    ])
    for k, colour in enumerate(CLASS_COLOURS):
        cv2.circle(canvas, (20 + 60 * k, 95), 8, colour, -1)
        cv2.putText(canvas, _class_name(k), (32 + 60 * k, 100), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def write_png(picture, path):
    """Write an RGB picture as PNG, atomically (OpenCV encodes BGR, so channels are swapped)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode QC picture {path}")
    write_bytes(encoded.tobytes(), path)
