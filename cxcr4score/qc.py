"""QC pictures a pathologist can check by eye.

One PNG per slide: left, a thumbnail with the tissue outline (green), the ROI outline (cyan)
and every cell as a dot coloured by its class; then a full-resolution crop of the densest
region with the measured cell and nucleus outlines (class colour for scored cells, grey for
detected cells that are not scored, such as lymphocytes), and the same crop without drawing,
so the staining under each outline can be judged. A legend names the colours and the slide's
QC status.
"""

from __future__ import annotations

import cv2
import numpy as np

from .tables import write_bytes

#: Class colours (RGB): 0 blue, 1+ yellow, 2+ orange, 3+ red (the usual IHC scoring palette).
CLASS_COLOURS = ((60, 110, 255), (255, 215, 0), (255, 130, 0), (220, 0, 0))
UNSCORED_COLOUR = (110, 110, 110)
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


def in_box(x, y, origin, shape):
    """Whether each centroid ``x``, ``y`` (analysis pixels) lies in the box of ``shape`` at ``origin`` (top, left)."""
    top, left = origin
    return (x >= left - 0.5) & (x < left + shape[1] - 0.5) & (y >= top - 0.5) & (y < top + shape[0] - 0.5)


def _legend(canvas, lines):
    for row, text in enumerate(lines):
        cv2.putText(canvas, text, (10, 22 + 22 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (30, 30, 30), 1, cv2.LINE_AA)


def _draw_outlines(crop, outlines, colours, origin):
    """Draw closed outlines (analysis pixels, pixel k centred on k) onto ``crop`` at ``origin``.

    Sub-pixel vertices are kept (``shift``): at 0.5 um/px a nucleus is ten pixels across, and
    rounding each vertex would make every outline look jagged.
    """
    shift = 3
    top, left = origin
    by_colour = {}
    for outline, colour in zip(outlines, colours):
        if len(outline):
            points = np.round((np.asarray(outline, float) - (left, top)) * (1 << shift)).astype(np.int32)
            by_colour.setdefault(colour, []).append(points)
    for colour, polygons in by_colour.items():
        cv2.polylines(crop, polygons, True, colour, 1, cv2.LINE_AA, shift)


def qc_picture(overview, *, overview_scale, crop, crop_origin, cell_x, cell_y, cell_class, cell_outlines,
               nucleus_outlines, tissue_mask=None, roi_mask=None, title=""):
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
        Scored class 0..3 of each cell; any other value marks a detected cell that is not
        scored (drawn grey in the crop, left off the thumbnail).
    cell_outlines, nucleus_outlines : sequence of (P, 2) array_like
        Per cell, the measured cell and nucleus outline as x, y vertices in analysis pixels
        (pixel k centred on k). Only cells centred in the crop are drawn, so the outlines of
        the others may be left empty; a cell in the crop without an outline gets a dot.
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
    classes = np.asarray(cell_class, int)
    scored = (classes >= 0) & (classes <= 3)
    shrink = min(1.0, THUMBNAIL_PX / max(overview.shape[:2]))
    thumb = _scaled(overview, shrink).copy()
    factor = shrink / overview_scale  # thumbnail px per analysis px
    if tissue_mask is not None:
        _outline(thumb, tissue_mask, TISSUE_COLOUR)
    if roi_mask is not None:
        _outline(thumb, roi_mask, ROI_COLOUR)
    dot = max(1, round(4 * factor))
    for k, colour in enumerate(CLASS_COLOURS):
        for xi, yi in zip(x[classes == k], y[classes == k]):
            cv2.circle(thumb, (round(xi * factor), round(yi * factor)), dot, colour, -1)
    top, left = crop_origin
    drawn = crop.copy()
    inside = np.flatnonzero(in_box(x, y, crop_origin, crop.shape))
    colours = [CLASS_COLOURS[classes[i]] if scored[i] else UNSCORED_COLOUR for i in inside]
    _draw_outlines(drawn, [cell_outlines[i] for i in inside], colours, crop_origin)
    _draw_outlines(drawn, [nucleus_outlines[i] for i in inside], colours, crop_origin)
    for i, colour in zip(inside, colours):
        if not len(cell_outlines[i]):
            cv2.circle(drawn, (round(x[i]) - left, round(y[i]) - top), 2, colour, -1)
    cv2.rectangle(thumb, (round(left * factor), round(top * factor)),
                  (round((left + crop.shape[1]) * factor), round((top + crop.shape[0]) * factor)), (0, 0, 0), 1)
    height = max(thumb.shape[0], crop.shape[0])
    canvas = np.full((height + 120, thumb.shape[1] + 2 * crop.shape[1] + 20, 3), 255, dtype=np.uint8)
    canvas[120 : 120 + thumb.shape[0], : thumb.shape[1]] = thumb
    canvas[120 : 120 + crop.shape[0], thumb.shape[1] + 10 : thumb.shape[1] + 10 + crop.shape[1]] = drawn
    canvas[120 : 120 + crop.shape[0], thumb.shape[1] + crop.shape[1] + 20 :] = crop
    counts = np.bincount(classes[scored], minlength=4)
    _legend(canvas, [
        title,
        "tissue outline green, ROI cyan; right: densest region at full resolution, measured cell and nucleus"
        " outlines (grey: not scored), and the same region undrawn",
        "scored cells per class: " + ", ".join(f"{_class_name(k)} {n}" for k, n in enumerate(counts)),
    ])
    for k, colour in enumerate((*CLASS_COLOURS, UNSCORED_COLOUR)):
        cv2.circle(canvas, (20 + 60 * k, 95), 8, colour, -1)
        name = _class_name(k) if k < 4 else "not scored"
        cv2.putText(canvas, name, (32 + 60 * k, 100), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def write_png(picture, path):
    """Write an RGB picture as PNG, atomically (OpenCV encodes BGR, so channels are swapped)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode QC picture {path}")
    write_bytes(encoded.tobytes(), path)
