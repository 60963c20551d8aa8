"""Numba kernels: fused lookup-table deconvolution, one-pass per-cell statistics, and the
per-pixel steps of segmentation and the tissue mask that no library does fast enough.

Written by hand because no library fuses these steps: scikit-image would deconvolve to
float64 planes (three passes and 48 bytes per pixel) and then measure each compartment in
a separate ``regionprops`` pass. Each kernel here reads the RGB image once. OpenCV's grey
erosion with a disk costs O(disk area) per pixel (0.1 s for a 16-pixel disk on 2048^2);
:func:`disk_filter_kernel` gives the same values at O(disk height).

Kernels take only arrays and scalars and do arithmetic only; the wrappers in
:mod:`cxcr4score.measure`, :mod:`cxcr4score.segment` and :mod:`cxcr4score.tissue`
validate, make arrays contiguous and allocate (STYLE section 3).
Parallel loops give each thread its own accumulator slice, indexed by
``numba.get_thread_id()`` and reduced serially by the wrapper; accumulators are integers
(OD quantised to ``round(OD * 2**20)``), so results are identical for any thread count.
No fastmath.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic, overload

#: Fixed-point scale of optical density in the accumulators (DESIGN section 6).
Q_SCALE = float(2**20)
#: Number of angular sectors of the membrane band (DESIGN section 5).
N_SECTORS = 16
#: Compartment codes (DESIGN section 3).
BACKGROUND, NUCLEUS, CYTOPLASM, MEMBRANE = 0, 1, 2, 3
#: Cytoplasm pixels within the membrane capture width (see ``segment.compartments``).
MEMBRANE_RING = 4
#: Compartment codes 0 (background) to 4: the statistics kernel's accumulators per label.
N_CODES = MEMBRANE_RING + 1
#: Joint histogram of tumour-region pixels: DAB in 800 bins of 0.005 OD and hematoxylin in
#: 200 bins of 0.02 OD, both from -1 to 3 (clamped), so that pixel-score thresholds on either
#: stain are applied after the pixel pass.
HIST_LOW = -1.0
HIST_BINS_PER_OD, HIST_BINS = 200.0, 800
HEM_BINS_PER_OD, HEM_BINS = 50.0, 200
#: Rows of a channel-pair table (``measure._channel_pair_rows``): row 256 r + g holds the red and
#: green channels' summed contributions, row RG_ROWS + b the blue channel's.
RG_ROWS = 256 * 256


@numba.njit(parallel=True, cache=True)
def hematoxylin_kernel(rgb, tables, hematoxylin):
    """hematoxylin[i, j] = sum_c tables[0, c, rgb[i, j, c]] (the first plane of deconvolve_kernel)."""
    n_rows, n_cols = rgb.shape[0], rgb.shape[1]
    for i in numba.prange(n_rows):
        for j in range(n_cols):
            hematoxylin[i, j] = tables[0, 0, rgb[i, j, 0]] + tables[0, 1, rgb[i, j, 1]] + tables[0, 2, rgb[i, j, 2]]


@numba.njit(cache=True)
def _bin(value, bins_per_od, n_bins):
    """floor((value - HIST_LOW) * bins_per_od) in float64, clamped to [0, n_bins - 1]."""
    # Clamping before truncating gives the same index as floor-then-clamp, branch-free.
    x = min(max((np.float64(value) - HIST_LOW) * bins_per_od, 0.0), n_bins - 1.0)
    return int(x)


#: tan(22.5 deg): the sector edges nearest each axis, compared with |dy| / |dx|.
_TAN_SECTOR = np.tan(np.pi / N_SECTORS * 2.0)
#: Relative margin within which a point counts as on a sector edge and gets atan2.
_EDGE_MARGIN = 1e-9


@numba.njit(cache=True)
def sector_of(dy, dx):
    """Sector floor((atan2(dy, dx) + pi) / (2 pi) * 16), clamped to 15, mostly without atan2.

    The sector edges are the axes, the diagonals and the lines |dy| = tan(22.5 deg) |dx|
    and |dx| = tan(22.5 deg) |dy|; a point clearly off every edge is placed by comparing
    |dy| and |dx| (exact for the float64 formula, whose error is ~1e-15 rad). Points within
    a relative 1e-9 of an edge (on an axis or a diagonal, where the float64 rounding of the
    formula decides, and where -0.0 and +0.0 differ) take the atan2 formula itself.
    """
    ax, ay = abs(dx), abs(dy)
    margin = _EDGE_MARGIN * (ax + ay)
    # Bitwise | rather than `or`, and sums of comparisons rather than if-chains: the
    # angle of neighbouring band pixels is unpredictable, so branches would mostly miss.
    on_edge = (
        (ax <= margin)
        | (ay <= margin)
        | (abs(ay - ax) <= margin)
        | (abs(ay - _TAN_SECTOR * ax) <= margin)
        | (abs(ax - _TAN_SECTOR * ay) <= margin)
    )
    if on_edge:
        s = int((np.arctan2(dy, dx) + np.pi) / (2.0 * np.pi) * N_SECTORS)
        return min(s, N_SECTORS - 1)
    # k: which 22.5-degree slice of the quadrant, counted from the x axis.
    k = int(ay > _TAN_SECTOR * ax) + int(ay > ax) + int(ax < _TAN_SECTOR * ay)
    upper = dy > 0
    return 8 * int(upper) + (k if upper == (dx > 0) else 7 - k)


# Numba leaves LLVM's SLP vectoriser off, so a row of a table is loaded and added lane by
# lane; the loop vectoriser would turn the table lookups into gathers (slower than scalar
# loads on current AMD CPUs, 1.5x slower than the intrinsics here on this Xeon). The two
# intrinsics below load and add table rows as single vectors. Each lane is the same IEEE
# float32 or int64 operation as the scalar code, so results are bit-identical; under
# NUMBA_DISABLE_JIT the NumPy twins run.
def _row_of_four(context, builder, array_type, array, index_type, index, width=4):
    """Pointer to row ``index`` of a C-contiguous (n, width) array, typed as a width-lane vector."""
    data = context.make_array(array_type)(context, builder, array).data
    offset = builder.mul(context.cast(builder, index, index_type, types.int64), ir.Constant(ir.IntType(64), width))
    vector = ir.VectorType(context.get_data_type(array_type.dtype), width)
    return builder.bitcast(builder.gep(data, [offset]), vector.as_pointer())


def _is_rows_of_four(array, dtype):
    # Typing sees rank, layout and dtype only: callers must pass (n, 4) arrays and row indices
    # within them (measure_cells and deconvolve build every such array themselves; the kernels
    # read pair-table rows 256 r + g and RG_ROWS + b of uint8 values, and no bounds are checked).
    return isinstance(array, types.Array) and array.ndim == 2 and array.layout == "C" and array.dtype == dtype


def _is_plane(array):
    return isinstance(array, types.Array) and array.ndim == 1 and array.dtype == types.float32


@intrinsic
def _sum_rows_into_planes_jit(typingctx, planes, j, table, ia, ib):
    """planes[lane][j] = (table[ia] + table[ib])[lane] for each plane of the tuple ``planes``:
    one vector load per table row (rows as wide as the planes are many: 2 or 4)."""
    if not (isinstance(planes, types.UniTuple) and planes.count in (2, 3) and _is_plane(planes.dtype)
            and _is_rows_of_four(table, types.float32)):
        return None
    width = 2 if planes.count == 2 else 4

    def codegen(context, builder, signature, args):
        planes_value, j_value, table_value, ia_value, ib_value = args
        planes_type, j_type, table_type, ia_type, ib_type = signature.args
        x = builder.load(_row_of_four(context, builder, table_type, table_value, ia_type, ia_value, width), align=4)
        y = builder.load(_row_of_four(context, builder, table_type, table_value, ib_type, ib_value, width), align=4)
        total = builder.fadd(x, y)
        j_index = context.cast(builder, j_value, j_type, types.intp)
        for lane in range(planes_type.count):
            plane = context.make_array(planes_type.dtype)(context, builder, builder.extract_value(planes_value, lane))
            target = cgutils.get_item_pointer(context, builder, planes_type.dtype, plane, [j_index], wraparound=False)
            builder.store(builder.extract_element(total, ir.Constant(ir.IntType(32), lane)), target)
        return context.get_dummy_value()

    return types.void(planes, j, table, ia, ib), codegen


def _sum_rows_into_planes_py(planes, j, table, ia, ib):
    """planes[lane][j] = (table[ia] + table[ib])[lane], float32."""
    total = table[ia] + table[ib]
    for lane, plane in enumerate(planes):
        plane[j] = total[lane]


@intrinsic
def _add_difference_jit(typingctx, out, o, a, ia, ib):
    if not (_is_rows_of_four(out, types.int64) and _is_rows_of_four(a, types.int64)):
        return None

    def codegen(context, builder, signature, args):
        out_value, o_value, a_value, ia_value, ib_value = args
        out_type, o_type, a_type, ia_type, ib_type = signature.args
        target = _row_of_four(context, builder, out_type, out_value, o_type, o_value)
        x = builder.load(_row_of_four(context, builder, a_type, a_value, ia_type, ia_value), align=8)
        y = builder.load(_row_of_four(context, builder, a_type, a_value, ib_type, ib_value), align=8)
        builder.store(builder.add(builder.load(target, align=8), builder.sub(x, y)), target, align=8)
        return context.get_dummy_value()

    return types.void(out, o, a, ia, ib), codegen


def _add_difference_py(out, o, a, ia, ib):
    """out[o] += a[ia] - a[ib], rows of four int64."""
    out[o] += a[ia] - a[ib]


if numba.config.DISABLE_JIT:
    _sum_rows_into_planes, _add_difference = _sum_rows_into_planes_py, _add_difference_py
else:
    _sum_rows_into_planes, _add_difference = _sum_rows_into_planes_jit, _add_difference_jit


@numba.njit(cache=True)
def _pair_rows(r, g, b):
    """The pair-table rows of a pixel: 256 r + g (red and green) and RG_ROWS + b (blue)."""
    return np.int64(r) * 256 + np.int64(g), RG_ROWS + np.int64(b)


@numba.njit(parallel=True, cache=True)
def deconvolve_kernel(rgb, pairs, hematoxylin, dab):
    """hematoxylin[i, j], dab[i, j] = pairs[256 r + g] + pairs[RG_ROWS + b] for the pixel's (r, g, b).

    Two 8-byte loads a pixel instead of six 4-byte ones: 2.1x on a 2048^2 tile (as the loop
    vectoriser's gathers, 1.5x).
    """
    n_rows, n_cols = rgb.shape[0], rgb.shape[1]
    for i in numba.prange(n_rows):
        row, planes = rgb[i], (hematoxylin[i], dab[i])
        for j in range(n_cols):
            rg, b = _pair_rows(row[j, 0], row[j, 1], row[j, 2])
            _sum_rows_into_planes(planes, j, pairs, rg, b)


@numba.njit(parallel=True, cache=True)
def cell_stats_kernel(
    rgb,
    cells,
    compartments,
    stain_pairs,
    centroid_row,
    centroid_col,
    in_scope,
    row_bands,
    count,
    sums,
    sectors,
    hist,
    invalid,
):
    """One pass over the pixels accumulating per (thread, cell, compartment) integer sums.

    ``stain_pairs`` holds (hematoxylin, DAB, alternative DAB, 0) contributions: row 256 r + g
    those of the red and green channels, row RG_ROWS + b those of blue. For a pixel of cell k and compartment m (0 background,
    1 nucleus, 2 cytoplasm, 3 membrane, 4 capture ring), with q(x) = rint(x * 2**20) of the
    float32 concentration x and key = N_CODES k + m: count[t, key] += 1 and sums[t, key] +=
    (q(DAB), q(DAB)**2, q(alternative DAB), q(hematoxylin)); label 0 and code 0 accumulate
    like the others (the caller drops them). Membrane pixels of cells (k > 0) add 1 and
    q(DAB) to sectors[t, k, s], s = :func:`sector_of` (i - cy, j - cx). Pixels of in-scope
    cells (k > 0, m > 0) add 1 to hist[t, HIST_BINS * hematoxylin bin + DAB bin], background
    pixels to one of 8 spare bins after those. ``row_bands`` holds the first row of each band
    of rows a loop iteration handles.
    """
    n_cols = rgb.shape[1]
    n_bins = HEM_BINS * HIST_BINS
    n_labels = in_scope.shape[0]
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        thread_count, thread_sums, thread_sectors, thread_hist = count[t], sums[t], sectors[t], hist[t]
        # Runs of equal (cell, compartment) are a few pixels long, so branches on where they
        # end would mostly mispredict. Each row goes instead through short loops without
        # data-dependent branches, most of which LLVM vectorises: concentrations (two
        # 16-byte table rows a pixel, into one plane per stain); q values, histogram bins and
        # (cell, compartment) keys; histogram counts; starts of runs; running sums of q. Then
        # each run adds the difference of the running sums at its ends. The concentrations go
        # to 1-D planes, not to an (n, 4) array: LLVM does not know the row length of a 2-D
        # array, so the loop reading it stayed scalar (3.6x slower on a 2048^2 tile).
        hem_plane, dab_plane, alt_plane = np.empty(n_cols, np.float32), np.empty(n_cols, np.float32), np.empty(n_cols, np.float32)
        planes = (hem_plane, dab_plane, alt_plane)
        q_dab = np.empty(n_cols, np.int64)
        q_alt = np.empty(n_cols, np.int64)
        q_hem = np.empty(n_cols, np.int64)
        bins = np.empty(n_cols, np.int64)
        keys = np.empty(n_cols, np.int64)
        starts = np.empty(n_cols + 1, np.int64)
        running = np.empty((n_cols + 1, 4), np.int64)
        running[0] = 0
        for i in range(row_bands[band], row_bands[band + 1]):
            rgb_row, cell_row, comp_row = rgb[i], cells[i], compartments[i]
            for j in range(n_cols):
                rg, b = _pair_rows(rgb_row[j, 0], rgb_row[j, 1], rgb_row[j, 2])
                _sum_rows_into_planes(planes, j, stain_pairs, rg, b)
            for j in range(n_cols):
                h, d = hem_plane[j], dab_plane[j]
                q_hem[j] = np.int64(np.rint(np.float64(h) * Q_SCALE))
                q_dab[j] = np.int64(np.rint(np.float64(d) * Q_SCALE))
                q_alt[j] = np.int64(np.rint(np.float64(alt_plane[j]) * Q_SCALE))
                k, m = np.int64(cell_row[j]), np.int64(comp_row[j])
                keys[j] = k * N_CODES + m
                # Background pixels count in spare bins, a different one for neighbouring
                # pixels so that their increments do not wait on each other.
                joint = _bin(h, HEM_BINS_PER_OD, HEM_BINS) * HIST_BINS + _bin(d, HIST_BINS_PER_OD, HIST_BINS)
                bins[j] = joint if (k > 0) & (m > 0) else n_bins + (j & 7)
            for j in range(n_cols):
                thread_hist[bins[j]] += 1
            n_runs = _run_starts(keys, starts)
            s_dab = s_sq = s_alt = s_hem = 0
            for j in range(n_cols):
                q = q_dab[j]
                s_dab += q
                s_sq += q * q
                s_alt += q_alt[j]
                s_hem += q_hem[j]
                running[j + 1, 0] = s_dab
                running[j + 1, 1] = s_sq
                running[j + 1, 2] = s_alt
                running[j + 1, 3] = s_hem
            for r in range(n_runs):
                a, b = starts[r], starts[r + 1]
                k, m = cell_row[a], comp_row[a]
                # Accumulators are indexed without bounds checks: a label or code out of
                # range is counted in invalid[t] (the caller raises), once per run.
                if (k < 0) | (k >= n_labels) | (m >= N_CODES):
                    invalid[t] += b - a
                    continue
                key = keys[a]
                thread_count[key] += b - a
                _add_difference(thread_sums, key, running, b, a)
                if k == 0 or m == 0:
                    continue
                if not in_scope[k]:  # counted above; out of the histogram's scope
                    for j in range(a, b):
                        thread_hist[bins[j]] -= 1
                if m == MEMBRANE:
                    dy = i - centroid_row[k]
                    for j in range(a, b):
                        s = sector_of(dy, j - centroid_col[k])
                        thread_sectors[k, s, 0] += 1
                        thread_sectors[k, s, 1] += q_dab[j]


@numba.njit(cache=True)
def _area_weights(first_out, n_out, first_in, n_in, scale):
    """Weights of input pixels [first_in, first_in + n_in) in outputs [first_out, first_out + n_out).

    Output pixel i covers input coordinates [i * scale, (i + 1) * scale); the weight of input
    pixel r is the length of its overlap with that span divided by ``scale``. Returns the
    first overlapping input index (relative to first_in), the count, and the weights.
    """
    span = int(np.ceil(scale)) + 1
    start = np.empty(n_out, np.int64)
    count = np.empty(n_out, np.int64)
    weights = np.zeros((n_out, span), np.float64)
    for k in range(n_out):
        a = (first_out + k) * scale
        b = (first_out + k + 1) * scale
        r0 = max(int(np.floor(a)), first_in)
        r1 = min(int(np.ceil(b)), first_in + n_in)
        start[k] = r0 - first_in
        count[k] = max(0, r1 - r0)
        for m in range(count[k]):
            r = r0 + m
            weights[k, m] = (min(b, r + 1.0) - max(a, float(r))) / scale
    return start, count, weights


@numba.njit(parallel=True, cache=True)
def area_resize_kernel(region, out, first_row, first_col, region_row, region_col, scale_row, scale_col):
    """out[i, j] = area average of the level pixels under analysis pixel (first_row + i, first_col + j).

    ``region`` holds level pixels starting at (region_row, region_col); weights depend only on
    global indices, so any box of the grid equals the same crop of the whole-slide result.
    Rows first, then columns, in float64; rounded half to even.
    """
    n_rows, n_cols = out.shape[0], out.shape[1]
    r_start, r_count, r_weight = _area_weights(first_row, n_rows, region_row, region.shape[0], scale_row)
    c_start, c_count, c_weight = _area_weights(first_col, n_cols, region_col, region.shape[1], scale_col)
    for i in numba.prange(n_rows):
        line = np.zeros((region.shape[1], 3), np.float64)
        for m in range(r_count[i]):
            w = r_weight[i, m]
            for c in range(region.shape[1]):
                for ch in range(3):
                    line[c, ch] += w * region[r_start[i] + m, c, ch]
        for j in range(n_cols):
            for ch in range(3):
                acc = 0.0
                for m in range(c_count[j]):
                    acc += c_weight[j, m] * line[c_start[j] + m, ch]
                out[i, j, ch] = np.uint8(min(255.0, max(0.0, np.rint(acc))))


@numba.njit(cache=True)
def _copy_row(source, target):
    """target[x] = source[x] for every x of two 1-D arrays of one length.

    A loop, not ``target[:] = source``: Numba compiles array-to-array slice assignment as a
    general broadcasting copy, 5-25x slower than this loop (a 4096-pixel uint16 row: 2.5 us
    against 0.1 us), which made the row copies about a quarter of ``disk_filter_kernel``'s time.
    """
    for x in range(source.shape[0]):
        target[x] = source[x]


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


@numba.njit(cache=True, inline="always")
def _larger(u, v):
    """max(u, v) of two numbers that are not NaN.

    A comparison, not the builtin: Numba's float ``max`` and ``min`` also order NaN, which
    keeps LLVM from using vector max and min instructions (1.4x slower on float32 rows).
    """
    return u if u > v else v


@numba.njit(cache=True, inline="always")
def _smaller(u, v):
    """min(u, v) of two numbers that are not NaN (see :func:`_larger`)."""
    return u if u < v else v


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
def label_count_kernel(labels, row_bands, counts):
    """counts[t, k] += number of pixels with label k (labels >= 0) in thread t's rows.

    By runs of equal labels along each row (:func:`_run_starts`), one addition a run: an
    addition a pixel waits on the previous one's store to the same count (a 2048^2 tissue
    mask: 9.3 ms, by runs 2.6).
    """
    n_cols = labels.shape[1]
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        starts = np.empty(n_cols + 1, np.int64)
        for i in range(row_bands[band], row_bands[band + 1]):
            row = labels[i]
            for r in range(_run_starts(row, starts)):
                counts[t, row[starts[r]]] += starts[r + 1] - starts[r]


@numba.njit(parallel=True, cache=True)
def relabel_kernel(labels, new_ids, out):
    """out[i, j] = new_ids[labels[i, j]]."""
    n_cols = labels.shape[1]
    for i in numba.prange(labels.shape[0]):
        for j in range(n_cols):
            out[i, j] = new_ids[labels[i, j]]


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


def row_bands(n_rows, rows_per_band):
    """First row of each band of ``rows_per_band`` rows (and ``n_rows``), as int64."""
    return np.append(np.arange(0, n_rows, max(1, rows_per_band), dtype=np.int64), np.int64(n_rows))


def thread_bands(n_rows):
    """Row bands splitting ``n_rows`` evenly over Numba's current thread count."""
    return row_bands(n_rows, -(-n_rows // max(1, numba.get_num_threads())))


def _trailing_zeros_py(word):
    """Index of the lowest set bit of a nonzero unsigned integer."""
    word = int(word)
    return (word & -word).bit_length() - 1


_trailing_zeros = _trailing_zeros_py if numba.config.DISABLE_JIT else trailing_zeros

#: Pixels whose change flags :func:`_run_starts` packs into one 64-bit word.
_RUN_WORD = 64


@numba.njit(cache=True)
def _run_starts(values, starts):
    """starts[r] = first index of the r-th run of equal values of the 1-D ``values``, and
    starts[n_runs] = len(values); returns n_runs.

    The change flags of 64 neighbours are packed into one word (a loop LLVM vectorises), and
    the set bits are taken out lowest first, so the work a pixel is a comparison and the
    work a run a few instructions. Runs are a few pixels long: a loop branching at each
    pixel on a change mispredicts about once a run, and the earlier branch-free loop (a
    store and a comparison a pixel) waits on its own count (4096^2 nucleus labels, runs
    found: 25.4 ms branch-free, 7.8 ms by words; (cell, compartment) keys 25.8 -> 16.1).
    """
    n = values.shape[0]
    starts[0] = 0
    if n == 0:
        return 0
    n_runs, j = 1, 1
    while j + _RUN_WORD <= n:
        changes = np.uint64(0)
        for t in range(_RUN_WORD):
            changes |= np.uint64(values[j + t] != values[j + t - 1]) << np.uint64(t)
        while changes:
            starts[n_runs] = j + np.int64(_trailing_zeros(changes))  # int64: no float mixing
            n_runs += 1
            changes &= changes - np.uint64(1)
        j += _RUN_WORD
    for k in range(j, n):
        starts[n_runs] = k
        n_runs += values[k] != values[k - 1]
    starts[n_runs] = n
    return n_runs


@numba.njit(parallel=True, cache=True)
def label_moments_kernel(labels, origin_row, origin_col, row_bands, sums):
    """Integer moments of every label 1..n about an integer origin, per thread.

    For each pixel (i, j) with label k in 1..n (n = origin_row.shape[0] - 1), with
    a = i - origin_row[k], b = j - origin_col[k]:
    sums[t, k] += (1, a, b, a*a, b*b, a*b). Integers, so any thread count gives the same sums.
    A run of L equal labels along a row (a fixed, b = b0 .. b0 + L - 1) is added at once from
    the closed forms of sum b and sum b**2, which are exact in integers. Label 0 pixels
    are only counted (sums[t, 0, 0]); other labels are skipped.
    """
    n_cols = labels.shape[1]
    n = origin_row.shape[0] - 1
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        starts = np.empty(n_cols + 1, np.int64)
        for i in range(row_bands[band], row_bands[band + 1]):
            row = labels[i]
            for r in range(_run_starts(row, starts)):
                j, end = starts[r], starts[r + 1]
                k = row[j]
                if 0 < k <= n:
                    length = end - j
                    a = i - origin_row[k]
                    b0 = j - origin_col[k]
                    # sum over t < L of t and of t**2; L * (L - 1) is even, L (L - 1) (2L - 1) divisible by 6.
                    t1 = length * (length - 1) // 2
                    t2 = length * (length - 1) * (2 * length - 1) // 6
                    sum_b = length * b0 + t1
                    sums[t, k, 0] += length
                    sums[t, k, 1] += a * length
                    sums[t, k, 2] += sum_b
                    sums[t, k, 3] += a * a * length
                    sums[t, k, 4] += length * b0 * b0 + 2 * b0 * t1 + t2
                    sums[t, k, 5] += a * sum_b
                elif k == 0:
                    sums[t, 0, 0] += end - j


@numba.njit(parallel=True, cache=True)
def od_sum_kernel(rgb, table, out):
    """out[i, j] = table[r, 0] + table[g, 1] + table[b, 2] (float32, summed left to right)."""
    n_cols = rgb.shape[1]
    for i in numba.prange(rgb.shape[0]):
        for j in range(n_cols):
            out[i, j] = table[rgb[i, j, 0], 0] + table[rgb[i, j, 1], 1] + table[rgb[i, j, 2], 2]


@numba.njit(parallel=True, cache=True)
def mask_upsample_kernel(mask, edge_blocks, smoothed, block_of, offsets, weights, threshold, out):
    """Upsample a block mask to ``out``: out pixel (i, j) lies in block (block_of[i], block_of[j]).

    Blocks replicate ``mask``, except the blocks listed in ``edge_blocks`` ((K, 2) as (column,
    row), the order of ``cv2.findNonZero``), where out[i, j] = (bicubic interpolation of
    ``smoothed`` >= threshold): the four taps of sub-pixel k (k = i - f * block, f the block
    size) at block offsets offsets[k] - 1 .. offsets[k] + 2 (clamped to the image) with
    weights[k], summed in float64. The tissue mask's way back from its working grid.
    """
    n_rows, n_cols = mask.shape
    factor = offsets.shape[0]
    for i in numba.prange(out.shape[0]):
        mask_row, out_row = mask[block_of[i]], out[i]
        for j in range(out.shape[1]):
            out_row[j] = mask_row[block_of[j]]
    for e in numba.prange(edge_blocks.shape[0]):
        q, p = edge_blocks[e, 0], edge_blocks[e, 1]
        for i in range(p * factor, min((p + 1) * factor, out.shape[0])):
            ki = i - p * factor
            for j in range(q * factor, min((q + 1) * factor, out.shape[1])):
                kj = j - q * factor
                total = 0.0
                for a in range(4):
                    r = min(max(p + offsets[ki] - 1 + a, 0), n_rows - 1)
                    row_total = 0.0
                    for b in range(4):
                        c = min(max(q + offsets[kj] - 1 + b, 0), n_cols - 1)
                        row_total += weights[kj, b] * smoothed[r, c]
                    total += weights[ki, a] * row_total
                out[i, j] = 1 if total >= threshold else 0


@numba.njit(cache=True)
def channel_counts_kernel(pixels, step, counts):
    """counts[c, v] = number of pixels 0, step, 2 step, ... of (N, 3) ``pixels`` with channel c = v."""
    for p in range(0, pixels.shape[0], step):
        for c in range(3):
            counts[c, pixels[p, c]] += 1


@numba.njit(cache=True)
def watershed_kernel(levels, markers, mask, output):
    """Marker watershed of a 2-D image of integer ``levels`` >= 0, 4-connected.

    Priority flood with a hierarchical queue (a FIFO per level): markers enter in raster
    order; a popped pixel labels each unlabelled mask neighbour (up, left, right, down)
    with its own label and queues it at max(its level, the current level). The pop order is
    (level, entry order), the order of scikit-image's heap ``watershed`` on the same levels
    except among markers of equal level, which scikit-image takes in heap order. O(1) per
    pixel where a heap costs ~150 ns (its sift over ~10 levels), hence written by hand.
    ``levels`` must have a one-pixel border outside ``mask``; ``output`` starts as a copy
    of ``markers`` and receives the basins.
    """
    n_cols = levels.shape[1]
    flat_levels = levels.reshape(-1)
    flat_mask = mask.reshape(-1)
    flat_out = output.reshape(-1)
    flat_markers = markers.reshape(-1)
    neighbours = np.array((-n_cols, -1, 1, n_cols), np.int64)
    n_levels = flat_levels.max() + 1
    head = np.full(n_levels, -1, np.int64)
    tail = np.full(n_levels, -1, np.int64)
    following = np.empty(flat_levels.shape[0], np.int64)
    level = n_levels
    for p in range(flat_markers.shape[0]):
        if flat_markers[p] != 0:
            q = flat_levels[p]
            _enqueue(head, tail, following, q, p)
            level = min(level, q)
    while level < n_levels:
        place = head[level]
        if place < 0:
            level += 1
            continue
        head[level] = following[place]
        label = flat_out[place]
        for n in range(4):
            neighbour = place + neighbours[n]
            if flat_mask[neighbour] and flat_out[neighbour] == 0:
                flat_out[neighbour] = label
                _enqueue(head, tail, following, max(flat_levels[neighbour], level), neighbour)


@numba.njit(cache=True)
def _enqueue(head, tail, following, level, place):
    following[place] = -1
    if head[level] < 0:
        head[level] = place
    else:
        following[tail[level]] = place
    tail[level] = place


@numba.njit(parallel=True, cache=True)
def split_boxes_kernel(labels, distance, ids, boxes, seed_first, seed_pixels, seed_ids, levels_per_px, offset,
                       areas, basin_areas):
    """Split each component ids[c] in place by :func:`watershed_kernel` on its own box.

    The box (``boxes[ids[c]]``, as ``segment._component_stats``) is copied with a one-pixel border:
    levels = rint(-distance * levels_per_px) less their minimum, the mask = the component's
    pixels, markers = its seeds ``seed_pixels[seed_first[c]:seed_first[c + 1]]`` (raveled
    indices into ``labels``, raster order) numbered ``seed_ids``. Each flooded pixel becomes
    its basin plus ``offset`` (> every component id) and basin_areas[basin] counts it; a
    pixel no seed reached keeps the component's id and areas[component] counts it.
    Components are 8-separated and the flood is 4-connected, so each floods only itself: a
    box at a time gives the same basins as one flood of all, with the data in cache.
    Components are split in parallel: each writes only its own pixels, its own area and its
    own basins' areas, and reads another's pixels (which may change meanwhile) only to see
    that they are not its own, which holds before and after (basins are numbered above
    every component id).
    """
    n_cols = labels.shape[1]
    scale = np.float32(levels_per_px)
    for c in numba.prange(ids.shape[0]):
        component = ids[c]
        r0, c0, r1, c1 = boxes[component, 0], boxes[component, 1], boxes[component, 2], boxes[component, 3]
        height, width = r1 - r0 + 2, c1 - c0 + 2
        levels = np.zeros((height, width), np.int32)
        inside = np.zeros((height, width), np.bool_)
        markers = np.zeros((height, width), np.int32)
        lowest = np.int32(0)
        for y in range(r0, r1):
            for x in range(c0, c1):
                if labels[y, x] == component:
                    level = np.int32(np.rint(-distance[y, x] * scale))
                    levels[y - r0 + 1, x - c0 + 1] = level
                    inside[y - r0 + 1, x - c0 + 1] = True
                    lowest = min(lowest, level)
        for y in range(height):
            for x in range(width):
                levels[y, x] = levels[y, x] - lowest if inside[y, x] else 0
        for s in range(seed_first[c], seed_first[c + 1]):
            y, x = seed_pixels[s] // n_cols, seed_pixels[s] % n_cols
            markers[y - r0 + 1, x - c0 + 1] = seed_ids[s]
        basins = markers.copy()
        watershed_kernel(levels, markers, inside, basins)
        for y in range(r0, r1):
            for x in range(c0, c1):
                if labels[y, x] == component:
                    basin = basins[y - r0 + 1, x - c0 + 1]
                    if basin == 0:
                        areas[component] += 1
                    else:
                        labels[y, x] = basin + offset
                        basin_areas[basin] += 1


@numba.njit(parallel=True, cache=True)
def label_stats_kernel(labels, row_bands, areas, boxes):
    """areas[t, k] = pixel count and boxes[t, k] = (first row, first col, last row + 1,
    last col + 1) of every label k >= 1 in thread t's bands of rows (``row_bands``, as
    :func:`row_bands`); ``boxes`` must start as (big, big, 0, 0) rows."""
    # By runs of one label (a label's five accumulators per pixel made each update wait on
    # the previous pixel's).
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        thread_areas, thread_boxes = areas[t], boxes[t]
        starts = np.empty(labels.shape[1] + 1, np.int64)
        for i in range(row_bands[band], row_bands[band + 1]):
            row = labels[i]
            for r in range(_run_starts(row, starts)):
                _add_run(thread_areas, thread_boxes, row[starts[r]], i, starts[r], starts[r + 1])


@numba.njit(cache=True)
def _add_run(areas, boxes, k, i, start, stop):
    """Count the run [start, stop) of label k (nothing for k <= 0) in row i into areas and boxes."""
    if k > 0:
        areas[k] += stop - start
        boxes[k, 0] = min(boxes[k, 0], i)
        boxes[k, 1] = min(boxes[k, 1], start)
        boxes[k, 2] = max(boxes[k, 2], i + 1)
        boxes[k, 3] = max(boxes[k, 3], stop)


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


@numba.njit(cache=True)
def seed_groups_kernel(seeds, row_counts):
    """The seed pixels of :func:`seed_mask_kernel`'s mask as raveled indices in raster order,
    and the 1-based number of the 8-connected group each belongs to (groups numbered in
    raster order of their first pixel)."""
    n_rows, n_cols = seeds.shape
    # Collected branch-free (each pixel's index is stored, the count advances on a seed), so
    # the buffer has one row's slack; only rows that hold seeds are read.
    flat = np.empty(row_counts.sum() + n_cols, np.int64)
    n = 0
    for i in range(n_rows):
        if row_counts[i] == 0:
            continue
        row = seeds[i]
        for j in range(n_cols):
            flat[n] = i * n_cols + j
            n += np.int64(row[j] != 0)
    flat = flat[:n]
    parent = np.arange(n)
    above = 0  # first seed pixel not before the row above's window: it only moves forward
    for k in range(n):
        p = flat[k]
        j = p % n_cols
        if j > 0 and k > 0 and flat[k - 1] == p - 1:
            _union(parent, k, k - 1)
        lo = p - n_cols - (1 if j > 0 else 0)
        hi = p - n_cols + (1 if j < n_cols - 1 else 0)
        while above < k and flat[above] < lo:
            above += 1
        for m in range(above, k):
            if flat[m] > hi:
                break
            _union(parent, k, m)
    ids = np.empty(n, np.int32)
    group = np.zeros(n, np.int32)
    n_groups = 0
    for k in range(n):
        root = _find(parent, k)
        if group[root] == 0:
            n_groups += 1
            group[root] = n_groups
        ids[k] = group[root]
    return flat, ids


@numba.njit(cache=True)
def _find(parent, k):
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


@numba.njit(cache=True)
def _union(parent, a, b):
    a, b = _find(parent, a), _find(parent, b)
    if a != b:
        parent[max(a, b)] = min(a, b)


def warm_up():
    """Compile every kernel, or load it from Numba's cache, for the types the pipeline uses.

    Run once before parallel jobs start (the workflow's ``validate_inputs`` rule), so that
    they load cached machine code instead of each compiling the same kernels at once.
    """
    from . import measure, segment, stains, tissue

    rows, cols = np.indices((96, 96))
    discs = ((rows - 30) ** 2 + (cols - 30) ** 2 <= 64) | ((rows - 30) ** 2 + (cols - 44) ** 2 <= 64)
    discs |= (rows - 70) ** 2 + (cols - 60) ** 2 <= 49
    rgb = np.repeat(np.where(discs, 90, 230).astype(np.uint8)[..., None], 3, axis=2)
    rgb[85, 10] = 0  # a speck: a tissue fragment too small to keep
    tables = stains.concentration_tables((240.0, 240.0, 240.0), stains.stain_matrix())
    measure.deconvolve(rgb, tables)
    hematoxylin = measure.deconvolve_hematoxylin(rgb, tables)
    tissue.tissue_mask(rgb, mpp=0.5, min_area_um2=20.0)
    nuclei = segment.detect_nuclei(hematoxylin, mpp=0.5)
    cells = segment.expand_cells(nuclei, mpp=0.5)
    codes, _ = segment.compartments(cells, nuclei, mpp=0.5)
    n = int(nuclei.max())
    centroid_row, centroid_col, _, _ = measure.nucleus_shape(nuclei, n)
    measure.measure_cells(
        rgb, cells, codes, n_cells=n, tables=tables, alt_dab_table=tables[1],
        centroid_row=centroid_row, centroid_col=centroid_col, in_scope=np.ones(n + 1, bool),
    )
    area_resize_kernel(rgb, np.empty((10, 10, 3), np.uint8), 0, 0, 0, 0, 1.5, 1.5)
    return n
