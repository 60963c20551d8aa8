"""Tissue mask: optical-density sum, channel counts, and the mask's way back from its
working grid."""

import numba


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
