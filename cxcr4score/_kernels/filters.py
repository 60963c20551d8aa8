"""Grey erosion and dilation by a disk on the OD grid, and the nucleus seed search (a window
maximum), at a cost per pixel that grows with the footprint's height, not its area."""

import numba
import numpy as np
from numba import types
from numba.extending import overload

from .rows import _copy_row, _larger


def _load_into_py(row, target, low, scale):
    """target[x] = row[x], put on the OD grid when a float row fills a uint16 target (see
    :func:`_load_into_jit`)."""
    if target.dtype == np.uint16 and row.dtype.kind == "f":
        target[:] = np.clip(np.rint((row.astype(np.float64) - low) * scale), 0.0, 65535.0)
    else:
        target[:] = row


_load_into = _load_into_py


@overload(_load_into, jit_options={"cache": True})
def _load_into_jit(row, target, low, scale):
    """target[x] = row[x] for rows of one type; a float row into a uint16 target is put on
    the OD grid, rint((x - low) * scale) clamped to 0 .. 65535 (OD is never NaN)."""
    if target.dtype == types.uint16 and isinstance(row.dtype, types.Float):
        def quantise(row, target, low, scale):
            for x in range(row.shape[0]):
                target[x] = np.uint16(min(max(np.rint((np.float64(row[x]) - low) * scale), 0.0), 65535.0))
        return quantise
    if target.dtype == row.dtype:
        return lambda row, target, low, scale: _copy_row(row, target)
    return None


@numba.njit(cache=True)
def _load_row(image, y, ring, slot, pad, fill, take_max, low, scale):
    """ring[slot, k, x] = extreme of the padded row y over [x, x + 2**k) (a sparse table);
    a float row into a uint16 ring is put on the OD grid (``low``, ``scale``) first."""
    n_cols = image.shape[1]
    base = ring[slot, 0]
    base[:pad] = fill
    _load_into(image[y], base[pad : pad + n_cols], low, scale)
    base[pad + n_cols :] = fill
    width = ring.shape[2]
    for k in range(1, ring.shape[1]):
        half = 1 << (k - 1)
        n = width - 2 * half + 1
        # Slices, not offset indices: Numba then vectorises the loop (no wraparound checks).
        left, right, level = ring[slot, k - 1, :n], ring[slot, k - 1, half : half + n], ring[slot, k, :n]
        if take_max:
            for x in range(n):
                level[x] = max(left[x], right[x])
        else:
            for x in range(n):
                level[x] = min(left[x], right[x])


#: What :func:`disk_filter_kernel` writes: the filtered grid values; the OD of a float image
#: minus them (an opening's residual); or the nucleus foreground test against them.
FILTER_KEEP, FILTER_RESIDUAL, FILTER_FOREGROUND = 0, 1, 2


@numba.njit(parallel=True, cache=True)
def disk_filter_kernel(image, low, scale, row_offsets, half_widths, take_max, finish, aux, threshold, fraction, out,
                       row_bands):
    """Grey erosion (``take_max`` False) or dilation of ``image`` on the OD grid by a footprint
    of rows, and what ``finish`` asks of the result.

    Rows of ``image`` enter on the OD grid (``low``, ``scale``; :func:`_load_into`): uint16
    as they are, float32 quantised, which commutes with the extremes. Footprint row
    ``row_offsets[m]`` (vertical offset) spans columns [-half_widths[m], +half_widths[m]].
    Pixels outside the image are ignored (OpenCV's default border for erode and dilate).
    Each row's extreme over a centred run of 2w + 1 columns is the extreme of two
    overlapping power-of-two runs of a sparse table, so the cost per pixel is O(footprint
    rows) instead of O(footprint area); the tables of the last 2r + 1 image rows (r the
    largest offset) live in a ring. With e the extreme and p = e / scale + low its OD:
    ``FILTER_KEEP`` writes out = e (uint16); ``FILTER_RESIDUAL`` out = aux - p (float32);
    ``FILTER_FOREGROUND`` out = 1 where aux >= threshold and aux >= fraction * p, else 0
    (uint8). Fused so that neither the quantised input nor the filtered image is a plane of
    its own. ``row_bands`` holds the first output row of each band a parallel iteration handles.
    """
    n_rows, n_cols = image.shape
    fill = np.uint16(0 if take_max else 65535)
    step = 1.0 / scale
    r = 0
    pad = 0
    for m in range(row_offsets.shape[0]):
        r = max(r, abs(row_offsets[m]))
        pad = max(pad, half_widths[m])
    n_levels = 1
    while (1 << n_levels) <= 2 * pad + 1:
        n_levels += 1
    level_of = np.empty(half_widths.shape[0], np.int64)
    for m in range(half_widths.shape[0]):
        k = 0
        while (1 << (k + 1)) <= 2 * half_widths[m] + 1:
            k += 1
        level_of[m] = k
    n_ring = 2 * r + 1
    for band in numba.prange(row_bands.shape[0] - 1):
        y0, y1 = row_bands[band], row_bands[band + 1]
        ring = np.empty((n_ring, n_levels, n_cols + 2 * pad), np.uint16)
        acc = np.empty(n_cols, np.uint16)
        for yy in range(max(0, y0 - r), min(n_rows, y0 + r)):
            _load_row(image, yy, ring, yy % n_ring, pad, fill, take_max, low, scale)
        for y in range(y0, y1):
            if y + r < n_rows:
                _load_row(image, y + r, ring, (y + r) % n_ring, pad, fill, take_max, low, scale)
            acc[:] = fill
            for m in range(row_offsets.shape[0]):
                yy = y + row_offsets[m]
                if yy < 0 or yy >= n_rows:
                    continue
                k = level_of[m]
                lo = pad - half_widths[m]
                hi = pad + half_widths[m] - (1 << k) + 1
                left = ring[yy % n_ring, k, lo : lo + n_cols]
                right = ring[yy % n_ring, k, hi : hi + n_cols]
                if take_max:
                    for x in range(n_cols):
                        acc[x] = max(acc[x], max(left[x], right[x]))
                else:
                    for x in range(n_cols):
                        acc[x] = min(acc[x], min(left[x], right[x]))
            out_row = out[y]
            if finish == FILTER_KEEP:
                for x in range(n_cols):
                    out_row[x] = acc[x]
                continue
            aux_row = aux[y]  # only here: FILTER_KEEP passes no image
            if finish == FILTER_RESIDUAL:
                for x in range(n_cols):
                    out_row[x] = np.float32(aux_row[x] - _from_grid(acc[x], step, low))
            else:
                for x in range(n_cols):
                    v = np.float64(aux_row[x])
                    out_row[x] = (v >= threshold) & (v >= fraction * _from_grid(acc[x], step, low))


@numba.njit(cache=True)
def _from_grid(quantised, step, low):
    """The OD of a grid value of :func:`_load_into` (step = 1 / scale), in float64."""
    return quantised * step + low


@numba.njit(cache=True)
def _row_maximum(left, right, out):
    """out[x] = max(left[x], right[x]) for rows without NaN (see :func:`_larger`)."""
    for x in range(out.shape[0]):
        out[x] = _larger(left[x], right[x])


@numba.njit(parallel=True, cache=True)
def seed_mask_kernel(distance, reach, min_depth, foreground, row_bands, seeds, row_counts):
    """seeds[i, j] = 1 where ``foreground`` is set, ``distance`` >= ``min_depth`` and ``distance``
    equals the maximum of its (2 reach + 1)^2 window (pixels outside the image ignored, as
    ``cv2.dilate``'s default border), else 0; ``row_counts[i]``: how many in row i.

    The window maximum is separable, and each 1-D maximum over 2 reach + 1 values is that of
    two overlapping power-of-two runs of a sparse table: across columns the table of
    :func:`_load_row`, down the rows a table built level by level as rows arrive, kept for
    the last 2 reach + 1 rows. So a pixel costs O(log reach) comparisons, and the plane of
    maxima that ``cv2.dilate`` would write, and this pass read back, never exists.
    ``row_bands`` holds the first row of each band a parallel iteration handles.
    """
    n_rows, n_cols = distance.shape
    width = 2 * reach + 1
    n_levels = 1
    while (1 << n_levels) <= width:
        n_levels += 1
    top = n_levels - 1
    span = 1 << top  # runs of the top level: two of them cover a window
    low = np.float32(-np.inf)
    depth = np.float32(min_depth)
    for band in numba.prange(row_bands.shape[0] - 1):
        y0, y1 = row_bands[band], row_bands[band + 1]
        table = np.empty((1, n_levels, n_cols + 2 * reach), np.float32)
        # column[k, slot]: maximum of the horizontal maxima of rows [u, u + 2**k), slot (u + reach) % width
        column = np.empty((n_levels, width, n_cols), np.float32)
        window = np.empty(n_cols, np.float32)
        for t in range(y0 - reach, y1 + reach):
            across = column[0, (t + reach) % width]
            if 0 <= t < n_rows:
                _load_row(distance, t, table, 0, reach, low, True, 0.0, 1.0)  # float rows: no grid
                _row_maximum(table[0, top, :n_cols], table[0, top, width - span : width - span + n_cols], across)
            else:
                across[:] = low
            for k in range(1, n_levels):
                u = t - (1 << k) + 1  # the run of level k that row t completes
                if u < y0 - reach:
                    break
                _row_maximum(column[k - 1, (u + reach) % width], column[k - 1, (u + (1 << (k - 1)) + reach) % width],
                             column[k, (u + reach) % width])
            y = t - reach
            if y < y0:
                continue
            _row_maximum(column[top, y % width], column[top, (y + width - span) % width], window)
            d_row, f_row, s_row = distance[y], foreground[y], seeds[y]
            count = 0
            for x in range(n_cols):
                d = d_row[x]
                hit = (f_row[x] != 0) & (d >= depth) & (d >= window[x])
                s_row[x] = np.uint8(hit)
                count += np.int64(hit)
            row_counts[y] = count
