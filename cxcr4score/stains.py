"""Stain vectors, background intensity (I0) and optical-density lookup tables.

Colour deconvolution follows Ruifrok & Johnston (2001) in the optical-density (OD) domain,
with QuPath's "H-DAB default" stain vectors and a per-channel background intensity I0:

    OD_c = -log10(clamp(I_c, 1, I0_c) / I0_c)            (Beer-Lambert, per channel c)
    [c_H, c_DAB, c_res] = OD @ inv(M)                    (M: one unit stain vector per row)

Concentrations are NOT clipped: negative values are kept, so means over a compartment stay
unbiased. Because an 8-bit channel takes only 256 values, OD times each column of inv(M) is
precomputed into six 256-entry tables (built in float64, stored float32); deconvolving a
pixel is then three lookups and two additions per stain (DESIGN section 6). The two-plane
path folds the red and green tables of both stains into one 65,536-row table of
(hematoxylin, DAB) float32 pairs (:func:`channel_pair_rows`): two lookups a pixel,
bit-identical because each row holds the float32 sum of the first two channels.
:func:`deconvolve` applies the tables (a Numba kernel in
:mod:`cxcr4score._kernels.deconvolution`).

This is NOT ``skimage.color.rgb2hed``: that uses the H-E-DAB matrix, divides OD by
ln(1e-6) (a factor of about 6) and clips at 0.

References
----------
.. [1] Ruifrok AC, Johnston DA. Quantification of histochemical staining by color
       deconvolution. Anal Quant Cytol Histol 2001;23:291-299.
.. [2] Bankhead P et al. QuPath: open source software for digital pathology image
       analysis. Sci Rep 2017;7:16878 (ColorDeconvolutionStains, "H-DAB default").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._kernels import deconvolution as kernels

#: QuPath "H-DAB default" hematoxylin OD direction (R, G, B).
QUPATH_HEMATOXYLIN = (0.65111, 0.70119, 0.29049)
#: QuPath "H-DAB default" DAB OD direction (R, G, B).
QUPATH_DAB = (0.26917, 0.56824, 0.77759)
#: Rows of the concentration tables: stain index of hematoxylin and DAB.
HEMATOXYLIN, DAB = 0, 1
#: Percentile of glass pixels taken as background intensity (QuPath practice).
I0_PERCENTILE = 99.0


def _unit(vector, name):
    v = np.asarray(vector, dtype=np.float64)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} stain vector must be 3 finite numbers, got {vector!r}")
    norm = np.linalg.norm(v)
    if norm == 0:
        raise ValueError(f"{name} stain vector must not be all zero, got {vector!r}")
    return v / norm


def stain_matrix(hematoxylin=QUPATH_HEMATOXYLIN, dab=QUPATH_DAB, third=None):
    """Build the 3x3 stain matrix: unit hematoxylin, unit DAB, third = H x DAB unless given.

    Parameters
    ----------
    hematoxylin, dab : (3,) array_like
        OD directions in RGB order; normalised to unit length here.
    third : (3,) array_like, optional
        Direction of a third, non-DAB stain seen on the slide (e.g. eosin); its share of the
        OD then goes to the third channel instead of into DAB. Default: the residual H x DAB.

    Returns
    -------
    matrix : (3, 3) ndarray of float64
        One stain per row (hematoxylin, DAB, residual).

    Raises
    ------
    ValueError
        If a vector is not three finite numbers, is zero, or the three are (nearly) coplanar.
    """
    h = _unit(hematoxylin, "hematoxylin")
    d = _unit(dab, "DAB")
    residual = np.cross(h, d)
    norm = np.linalg.norm(residual)
    if norm < 1e-6:
        raise ValueError(f"hematoxylin {hematoxylin!r} and DAB {dab!r} vectors are parallel")
    matrix = np.stack([h, d, residual / norm if third is None else _unit(third, "third")])
    if abs(np.linalg.det(matrix)) < 1e-3:
        raise ValueError(f"stain vectors {matrix.round(5).tolist()!r} are coplanar: cannot separate the stains")
    return matrix


def od_table(i0):
    """Per-channel optical density for every 8-bit value.

    Parameters
    ----------
    i0 : (3,) array_like
        Background (glass) intensity per channel, in (1, 255].

    Returns
    -------
    table : (3, 256) ndarray of float64
        ``table[c, v] = -log10(clamp(v, 1, I0_c) / I0_c)``.
    """
    i0 = np.asarray(i0, dtype=np.float64)
    if i0.shape != (3,) or not np.all((i0 > 1) & (i0 <= 255)):
        raise ValueError(f"I0 must be 3 values in (1, 255], got {i0.tolist()!r}")
    values = np.arange(256, dtype=np.float64)[None, :]
    clamped = np.clip(values, 1.0, i0[:, None])
    return -np.log10(clamped / i0[:, None])


def concentration_tables(i0, matrix):
    """Lookup tables folding OD and the inverse stain matrix for hematoxylin and DAB.

    Parameters
    ----------
    i0 : (3,) array_like
        Background intensity per channel.
    matrix : (3, 3) ndarray
        Stain matrix from :func:`stain_matrix`.

    Returns
    -------
    tables : (2, 3, 256) ndarray of float32
        ``tables[s, c, v]`` is the contribution of channel ``c`` at value ``v`` to the
        concentration of stain ``s`` (0 hematoxylin, 1 DAB); a pixel's concentration is
        the sum over its three channels. Built in float64, stored float32.
    """
    inverse = np.linalg.inv(np.asarray(matrix, dtype=np.float64))
    od = od_table(i0)
    tables = od[None, :, :] * inverse.T[:2, :, None]
    return np.ascontiguousarray(tables, dtype=np.float32)


@dataclass(frozen=True)
class Background:
    """Per-channel background intensity of a slide and where it came from."""

    i0: tuple[float, float, float]
    source: str  # "glass" or "default"
    warning: str | None = None


def measure_background(rgb, glass, *, default_i0=255.0, min_glass_fraction=0.01):
    """Per-channel I0 as the 99th percentile of glass pixels (QuPath practice).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
        Image at analysis resolution.
    glass : (M, N) ndarray of bool
        Tissue-free pixels.
    default_i0 : float, optional
        Used for every channel when there is too little glass.
    min_glass_fraction : float, optional
        Smallest share of glass pixels from which I0 is measured.

    Returns
    -------
    Background
        ``source`` is ``"glass"`` or ``"default"`` (the latter with a QC warning).
    """
    n_glass = int(np.count_nonzero(glass))
    if n_glass == 0 or n_glass < min_glass_fraction * glass.size:
        return Background(
            (float(default_i0),) * 3,
            "default",
            f"too little glass to measure background ({n_glass} px); I0 = {default_i0:g} assumed",
        )
    values = rgb[glass]
    i0 = np.percentile(values, I0_PERCENTILE, axis=0)
    # A channel whose glass is nearly black cannot serve as background; fall back.
    i0 = np.clip(i0, 2.0, 255.0)
    return Background(tuple(float(v) for v in i0), "glass")


def check_rgb(rgb):
    """The image as a C-contiguous (M, N, 3) uint8 array; ValueError naming the shape and dtype
    of anything else."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise ValueError(f"expected an (M, N, 3) uint8 RGB image, got shape {shape} dtype {dtype}")
    return np.ascontiguousarray(rgb)


def check_tables(tables):
    """Concentration tables as a C-contiguous (2, 3, 256) float32 array; ValueError otherwise."""
    tables = np.ascontiguousarray(tables, dtype=np.float32)
    if tables.shape != (2, 3, 256):
        raise ValueError(f"concentration tables must have shape (2, 3, 256), got {tables.shape}")
    return tables


def channel_pair_rows(tables):
    """Pair table of concentration tables: row 256 r + g holds tables[s][0, r] + tables[s][1, g]
    for each stain s, row RG_ROWS + b holds tables[s][2, b] (float32).

    The float32 sum of a pixel's two rows is the float32 sum of its three channel entries
    added in channel order, so concentrations are bit-identical to three lookups a stain.
    Two stains give (RG_ROWS + 256, 2); three give (RG_ROWS + 256, 4), the last lane 0 (rows
    of 16 bytes, one vector load each).

    Parameters
    ----------
    tables : sequence of (3, 256) ndarray of float32

    Returns
    -------
    (65792, 2) or (65792, 4) ndarray of float32
    """
    width = 2 if len(tables) == 2 else 4
    pairs = np.zeros((kernels.RG_ROWS + 256, width), np.float32)
    for s, table in enumerate(tables):
        pairs[: kernels.RG_ROWS, s] = np.add.outer(table[0], table[1]).ravel()  # float32 sums
        pairs[kernels.RG_ROWS :, s] = table[2]
    return pairs


def deconvolve(rgb, tables):
    """Hematoxylin and DAB concentration planes by lookup (one read of the RGB image).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
    tables : (2, 3, 256) ndarray of float32
        From :func:`concentration_tables`.

    Returns
    -------
    hematoxylin, dab : (M, N) ndarray of float32
        Stain concentrations in OD units; negative values are kept.
    """
    rgb = check_rgb(rgb)
    pairs = channel_pair_rows(check_tables(tables))
    hematoxylin = np.empty(rgb.shape[:2], dtype=np.float32)
    dab = np.empty(rgb.shape[:2], dtype=np.float32)
    kernels.deconvolve_kernel(rgb, pairs, hematoxylin, dab)
    return hematoxylin, dab
