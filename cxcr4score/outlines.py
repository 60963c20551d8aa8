"""Outline polygons of labelled cells and nuclei, for QuPath (``results/cells/*.geojson``).

Tracing each label on its own (``cv2.findContours`` per bounding box) costs more than the
segmentation itself (tens of microseconds of call overhead per label, thousands of labels a
chunk). So each label loses its one-pixel boundary ring, which leaves no two labels touching,
and OpenCV traces every label of the image in one call; each outline is then assigned to the
label it lies in, and each vertex is moved one pixel out from the outline's centre, back onto
the removed ring. An outline so runs about through the centres of the label's boundary pixels,
half a grid pixel inside the measured region's edge, as a per-label trace would.
"""

from __future__ import annotations

import cv2
import numpy as np


def label_outlines(labels, ids, *, row_offset=0.0, col_offset=0.0, scale=1.0):
    """The outer outline of each of ``ids`` in ``labels``, as flat level-0 coordinates.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        0 background, 1..n labels.
    ids : sequence of int
        Labels to outline (each 1..n).
    row_offset, col_offset : float
        Position of ``labels[0, 0]`` on the grid the coordinates are scaled from.
    scale : float
        Level-0 pixels per grid pixel.

    Returns
    -------
    list of (2 P,) ndarray of float32
        Per id, ``x0, y0, x1, y1, ...`` (not closed) of the outline, about through the centres of
        the label's boundary pixels, in level-0 pixels (pixel k spans [k, k + 1), its centre
        k + 0.5); empty for a label absent from ``labels`` or too thin to keep a pixel inside
        its boundary ring. A label in several pieces gets its largest outline.
    """
    labels = np.asarray(labels)
    # A pixel with a 4-neighbour of another label: where the label's largest or smallest
    # 4-neighbour differs from it (OpenCV's morphology on float32, exact below 2**24 labels).
    values = labels.astype(np.float32)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    edge = ((labels == 0) | (cv2.dilate(values, cross, borderType=cv2.BORDER_REPLICATE) != values)
            | (cv2.erode(values, cross, borderType=cv2.BORDER_REPLICATE) != values))
    contours, _ = cv2.findContours((~edge).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    longest = {}
    for contour in contours:
        x, y = contour[0, 0]
        label = int(labels[y, x])
        if len(contour) > len(longest.get(label, ())):
            longest[label] = contour
    chosen = [longest.get(int(k)) for k in ids]
    present = [c for c in chosen if c is not None]
    if not present:
        return [np.zeros(0, np.float32) for _ in chosen]
    points = np.concatenate(present)[:, 0, :].astype(np.float64)  # (P, 2) as (x, y), all outlines
    # Back out to the removed ring: each vertex one pixel further from its outline's centre.
    counts = np.array([len(c) for c in present])
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    centres = np.repeat(np.add.reduceat(points, starts, axis=0) / counts[:, None], counts, axis=0)
    away = points - centres
    length = np.hypot(away[:, 0], away[:, 1])
    points += np.divide(away, length[:, None], out=np.zeros_like(away), where=length[:, None] > 0)
    points[:, 0] += col_offset + 0.5
    points[:, 1] += row_offset + 0.5
    flat = iter(np.split((points * scale).astype(np.float32).ravel(), 2 * np.cumsum(counts)[:-1]))
    return [next(flat) if c is not None else np.zeros(0, np.float32) for c in chosen]
