"""Label images: relabelling, the watershed that splits touching nuclei, and seed groups."""

import numba
import numpy as np


@numba.njit(parallel=True, cache=True)
def relabel_kernel(labels, new_ids, out):
    """out[i, j] = new_ids[labels[i, j]]."""
    n_cols = labels.shape[1]
    for i in numba.prange(labels.shape[0]):
        for j in range(n_cols):
            out[i, j] = new_ids[labels[i, j]]


@numba.njit(cache=True)
def watershed_kernel(levels, markers, mask, output):
    """Marker watershed of a 2-D image of integer ``levels`` >= 0, 4-connected.

    Priority flood with a hierarchical queue (a FIFO per level): markers enter in raster
    order; a popped pixel labels each unlabelled mask neighbour (up, left, right, down)
    with its own label and queues it at max(its level, the current level). The pop order is
    (level, entry order), the order of scikit-image's heap ``watershed`` on the same levels
    except among markers of equal level, which scikit-image takes in heap order. O(1) per
    pixel where a heap pays a sift over its levels for every pixel, hence written by hand.
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

    The box (``boxes[ids[c]]``, as ``measure.label_stats``) is copied with a one-pixel border:
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


@numba.njit(parallel=True, cache=True)
def label_sums_kernel(labels, values, scale, row_bands, counts, sums):
    """counts[t, k] += 1 and sums[t, k] += rint(values * scale) over the pixels of label k >= 1
    in thread t's bands of rows: integers, so any thread count gives the same totals."""
    n_cols = labels.shape[1]
    for band in numba.prange(row_bands.shape[0] - 1):
        t = numba.get_thread_id()
        thread_counts, thread_sums = counts[t], sums[t]
        for i in range(row_bands[band], row_bands[band + 1]):
            row, value_row = labels[i], values[i]
            for j in range(n_cols):
                k = row[j]
                if k > 0:
                    thread_counts[k] += 1
                    thread_sums[k] += np.int64(np.rint(np.float64(value_row[j]) * scale))


@numba.njit(parallel=True, cache=True)
def take_where_kernel(labels, nearest, values, level, out):
    """out = nearest where labels == 0, nearest > 0 and values >= level[nearest]; else labels."""
    n_cols = labels.shape[1]
    for i in numba.prange(labels.shape[0]):
        row, near, value_row, out_row = labels[i], nearest[i], values[i], out[i]
        for j in range(n_cols):
            k = near[j]
            take = (row[j] == 0) & (k > 0) and value_row[j] >= level[k]
            out_row[j] = k if take else row[j]
