"""Cells from nuclei: expansion that never crosses a neighbour, and compartment codes."""

import numba
import numpy as np

from ..constants import BACKGROUND, CYTOPLASM, MEMBRANE, MEMBRANE_RING, NUCLEUS
from .rows import _copy_row, _larger, _smaller


@numba.njit(cache=True)
def _widen(levels, take_max):
    """levels[w, x] = extreme (maximum if ``take_max``) of levels[0] over columns x - w .. x + w.

    For w = 1 .. levels.shape[0] - 1, where those columns exist; a width w >= 2 is the
    extreme of two of width w - 1, one column apart each way.
    """
    width = levels.shape[1]
    for w in range(1, levels.shape[0]):
        n = width - 2 * w
        # Slices, not offset indices: Numba then vectorises the loops.
        left, right, out = levels[w - 1, w - 1 : w - 1 + n], levels[w - 1, w + 1 : w + 1 + n], levels[w, w : w + n]
        centre = levels[0, w : w + n]
        if take_max and w == 1:
            for x in range(n):
                out[x] = _larger(_larger(left[x], right[x]), centre[x])
        elif take_max:
            for x in range(n):
                out[x] = _larger(left[x], right[x])
        elif w == 1:
            for x in range(n):
                out[x] = _smaller(_smaller(left[x], right[x]), centre[x])
        else:
            for x in range(n):
                out[x] = _smaller(left[x], right[x])


@numba.njit(cache=True)
def _disk_extreme(levels, y, half_widths, take_max, out):
    """out[x] = extreme over the disk around (y, x) of the rows whose :func:`_widen` levels
    sit in ``levels`` (slot y % n_slots, columns shifted by the disk's radius r)."""
    n_slots, n = levels.shape[0], out.shape[0]
    r = half_widths[0]
    centre = levels[y % n_slots, r, r : r + n]
    if half_widths.shape[0] == 1:
        for x in range(n):
            out[x] = centre[x]
    for d in range(1, half_widths.shape[0]):
        above = levels[(y - d) % n_slots, half_widths[d], r : r + n]
        below = levels[(y + d) % n_slots, half_widths[d], r : r + n]
        # The first step reads the centre, the others `out`: a source that might alias
        # `out` would keep Numba from vectorising.
        if d == 1 and take_max:
            for x in range(n):
                out[x] = _larger(centre[x], _larger(above[x], below[x]))
        elif d == 1:
            for x in range(n):
                out[x] = _smaller(centre[x], _smaller(above[x], below[x]))
        elif take_max:
            for x in range(n):
                out[x] = _larger(out[x], _larger(above[x], below[x]))
        else:
            for x in range(n):
                out[x] = _smaller(out[x], _smaller(above[x], below[x]))


@numba.njit(cache=True)
def _load_label_levels(cells, y, none, high, low, low_nonzero):
    """Row clamp(y) of ``cells`` as float32 (its edge values repeated r times each side) and
    its :func:`_widen` maxima, minima and minima with 0 read as ``none``."""
    n_rows, n_cols = cells.shape
    r = high.shape[0] - 1
    row = cells[min(max(y, 0), n_rows - 1)]
    value, bottom, nonzero = high[0], low[0], low_nonzero[0]
    inner_value, inner_bottom, inner_nonzero = value[r : r + n_cols], bottom[r : r + n_cols], nonzero[r : r + n_cols]
    for x in range(n_cols):
        v = np.float32(row[x])
        inner_value[x] = v
        inner_bottom[x] = v
        inner_nonzero[x] = v if v != 0 else none
    for p in range(2 * r):  # the edge values repeated
        x = p if p < r else n_cols + p
        v = np.float32(row[0] if p < r else row[n_cols - 1])
        value[x] = v
        bottom[x] = v
        nonzero[x] = v if v != 0 else none
    _widen(high, True)
    _widen(low, False)
    _widen(low_nonzero, False)


@numba.njit(parallel=True, cache=True)
def compartments_kernel(cells, nuclei, half_widths, ring_half_widths, row_bands, codes, counts):
    """Compartment code of every pixel and per-(thread, cell) band and exposed-band counts.

    A cell pixel (``cells > 0``) that is not nuclear is membrane (3) when some pixel of the
    disk around it (the row at vertical offset dy spans columns -half_widths[|dy|] ..
    +half_widths[|dy|]) has another label or none; else it is ring (4) when a membrane pixel
    lies within the disk of ``ring_half_widths`` (``[0]``: no ring), else cytoplasm (2).
    Nuclear cell pixels are 1, background 0. For the band, coordinates are clamped at the
    image edge (the border is replicated); for the ring, pixels outside the image are not
    membrane. counts[t, k, 0] counts the band pixels of cell k, counts[t, k, 1] those with
    no other cell within reach ("exposed").

    Labels are compared as float32 (exact below 2**24; Numba vectorises float min and max,
    not integer ones) through the disk's extremes, taken as extremes over rows of each row's
    horizontal extremes (computed once per row): another label is near when the maximum
    exceeds the pixel's label or the minimum with 0 read as 2**24 is below it; no label is
    near when the minimum is 0. Each band of rows also computes the membrane of the ring's
    reach of rows beyond its edges, so results do not depend on the banding.
    """
    n_rows, n_cols = cells.shape
    r, ring_reach = half_widths.shape[0] - 1, ring_half_widths.shape[0] - 1
    n_slots, n_ring_slots = 2 * r + 1, 2 * ring_reach + 1
    none = np.float32(2**24)
    one, zero = np.float32(1.0), np.float32(0.0)
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        y0, y1 = row_bands[band], row_bands[band + 1]
        high = np.empty((n_slots, r + 1, n_cols + 2 * r), np.float32)
        low, low_nonzero = np.empty_like(high), np.empty_like(high)
        # Membrane flags (1.0) of the last rows, padded with 0, and their _widen maxima.
        membrane = np.zeros((n_ring_slots, ring_reach + 1, n_cols + 2 * ring_reach), np.float32)
        exposed = np.empty((n_ring_slots, n_cols), np.float32)
        extremes = np.empty((3, n_cols), np.float32)
        near = np.empty(n_cols, np.float32)
        tally = np.empty(n_cols, np.uint8)
        first = y0 - ring_reach
        for yy in range(first - r, first + r):
            s = yy % n_slots
            _load_label_levels(cells, yy, none, high[s], low[s], low_nonzero[s])
        for y in range(first, y1 + ring_reach):
            s = (y + r) % n_slots
            _load_label_levels(cells, y + r, none, high[s], low[s], low_nonzero[s])
            in_band = membrane[y % n_ring_slots, 0, ring_reach : ring_reach + n_cols]
            alone_in_band = exposed[y % n_ring_slots]
            if 0 <= y < n_rows:
                _disk_extreme(high, y, half_widths, True, extremes[0])
                _disk_extreme(low, y, half_widths, False, extremes[1])
                _disk_extreme(low_nonzero, y, half_widths, False, extremes[2])
                own, nucleus = high[y % n_slots, 0, r : r + n_cols], nuclei[y]
                highest, lowest, lowest_nonzero = extremes[0], extremes[1], extremes[2]
                for x in range(n_cols):
                    k = own[x]
                    other = (highest[x] > k) | (lowest_nonzero[x] < k)
                    alone = (highest[x] <= k) & (lowest_nonzero[x] >= k) & (lowest[x] == zero)
                    inside = (k != zero) & (nucleus[x] == 0)
                    in_band[x] = one if inside & (other | alone) else zero
                    alone_in_band[x] = one if inside & alone else zero
            else:
                for x in range(n_cols):
                    in_band[x] = zero
            _widen(membrane[y % n_ring_slots], True)
            z = y - ring_reach  # all membrane within the ring's reach of row z is known
            if z < y0:
                continue
            _disk_extreme(membrane, z, ring_half_widths, True, near)
            cell, nucleus, code = cells[z], nuclei[z], codes[z]
            z_band, z_exposed = membrane[z % n_ring_slots, 0, ring_reach:], exposed[z % n_ring_slots]
            for x in range(n_cols):
                if cell[x] == 0:
                    code[x] = BACKGROUND
                elif nucleus[x] != 0:
                    code[x] = NUCLEUS
                elif z_band[x] != 0:
                    code[x] = MEMBRANE
                elif near[x] != 0:
                    code[x] = MEMBRANE_RING
                else:
                    code[x] = CYTOPLASM
                tally[x] = np.uint8(z_band[x] + np.float32(2.0) * z_exposed[x])  # bit 0 band, bit 1 exposed
            # Band counts summed over runs of one label, flushed at a change, in a loop of
            # its own: the loop above then vectorises, and the sums stay in registers.
            current = n_band = n_exposed = 0
            for x in range(n_cols):
                k = cell[x]
                if k != current:
                    counts[t, current, 0] += n_band
                    counts[t, current, 1] += n_exposed
                    current, n_band, n_exposed = k, 0, 0
                n_band += tally[x] & 1
                n_exposed += tally[x] >> 1
            counts[t, current, 0] += n_band
            counts[t, current, 1] += n_exposed


@numba.njit(parallel=True, cache=True)
def expand_labels_kernel(labels, reach, max_d2, shift, row_bands, out):
    """out = each zero pixel's nearest nonzero pixel's label if within reach, as scikit-image.

    The nearest pixel of ``labels != 0`` by exact Euclidean distance, among those at squared
    distance <= ``max_d2`` (< (``reach`` + 1) ** 2); ties go to the lowest column, then the lowest
    row, which is what ``scipy.ndimage.distance_transform_edt(..., return_indices=True)``
    (columns, then rows, each keeping the first of equal distances) returns, so that
    ``skimage.segmentation.expand_labels`` is matched pixel for pixel. Nonzero pixels keep
    their label; pixels with no nonzero pixel in reach get 0.

    Separable and truncated at ``reach`` (Meijster-style): a column pass finds each pixel's
    nearest nonzero pixel above and below within ``reach`` (two sweeps; the one above wins a
    tie), then a row pass takes the minimum over the 2 ``reach`` + 1 columns around of
    key = (dv**2 + dx**2) * 2**shift + (dx + reach), whose low bits name the winning column
    (float32: exact for integers below 2**24, and Numba vectorises float min, not int min).
    ``row_bands`` holds the first row of each band a parallel iteration handles; each band
    sweeps ``reach`` rows beyond its edges, so results do not depend on the banding.
    """
    n_rows, n_cols = labels.shape
    none = np.float32(reach + 1)
    zero = np.float32(0.0)
    big = np.float32(2**23)
    scale = np.float32(1 << shift)
    mask = (1 << shift) - 1
    width = 2 * reach + 1
    flat = labels.reshape(-1)
    for band in numba.prange(row_bands.shape[0] - 1):
        y0, y1 = row_bands[band], row_bands[band + 1]
        # Column pass, upward sweep: distance to the nearest nonzero pixel at or below.
        below = np.empty((y1 - y0, n_cols), np.float32)
        d = np.full(n_cols, none, np.float32)
        for y in range(min(n_rows - 1, y1 - 1 + reach), y0 - 1, -1):
            row = labels[y]
            for x in range(n_cols):
                step = min(d[x] + np.float32(1.0), none)
                d[x] = zero if row[x] != 0 else step
            if y < y1:
                _copy_row(d, below[y - y0])
        # Downward sweep: distance at or above, started `reach` rows early.
        d[:] = none
        for y in range(max(0, y0 - reach), y0):
            row = labels[y]
            for x in range(n_cols):
                step = min(d[x] + np.float32(1.0), none)
                d[x] = zero if row[x] != 0 else step
        # Padded by `reach` on both sides with keys no pixel accepts.
        key = np.full(n_cols + 2 * reach, big, np.float32)
        # Flat index of each column's candidate; padded to every column a key's low bits can
        # name, with index 0, which is read only when nothing is in reach.
        source = np.zeros(n_cols + (1 << shift), np.int64)
        acc = np.empty(n_cols, np.float32)
        for y in range(y0, y1):
            row, down = labels[y], below[y - y0]
            key_row, source_row = key[reach : reach + n_cols], source[reach : reach + n_cols]
            for x in range(n_cols):
                step = min(d[x] + np.float32(1.0), none)
                up = zero if row[x] != 0 else step
                d[x] = up
                dv = min(up, down[x])
                key_row[x] = dv * dv * scale if dv < none else big
                dy = np.int64(-up if up <= down[x] else down[x]) if dv < none else 0
                source_row[x] = (y + dy) * n_cols + x
            # Row pass, two columns per loop (half the loads and stores of `acc`).
            acc[:] = big
            for k in range(0, width, 2):
                j = min(k + 1, width - 1)
                c = np.float32((((k - reach) * (k - reach)) << shift) + k)
                c_next = np.float32((((j - reach) * (j - reach)) << shift) + j)
                src, src_next = key[k : k + n_cols], key[j : j + n_cols]
                for x in range(n_cols):
                    acc[x] = min(acc[x], min(src[x] + c, src_next[x] + c_next))
            # Branch-free; unsigned indices: no negative-index wraparound test per pixel.
            out_row = out[y]
            for x in range(n_cols):
                a = np.int64(acc[x])
                label = flat[np.uint64(source[np.uint64(x + (a & mask))])]
                out_row[x] = label if (a >> shift) <= max_d2 else 0
