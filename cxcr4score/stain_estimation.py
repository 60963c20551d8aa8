"""Per-slide stain directions (Macenko 2009), accepted only close to the reference.

The optical densities (OD) of stained tissue pixels lie near the plane spanned by the stains'
OD directions. Macenko's method finds that plane as the two leading singular vectors of the
OD, projects every pixel onto it and takes the directions at the 1st and 99th percentile of
the angle in the plane as the two stains. Here only the *directions* may change; the
concentration scale stays that of unit vectors (DESIGN section 5), and an estimate is used
only when it is trustworthy:

* hematoxylin: the extreme nearest the reference hematoxylin, used when within
  ``max_angle_deg`` of it;
* DAB: the other extreme, used when within ``max_angle_deg`` of the reference DAB AND at least
  ``min_dab_fraction`` of the stained pixels have an OD direction within ``max_angle_deg`` of
  the reference DAB. On a DAB-negative slide the second extreme is hematoxylin noise, and on a
  weakly positive one it is pulled towards hematoxylin; neither may replace DAB;
* a third stain: on a slide without DAB-like pixels, when the second extreme is not DAB-like
  and lies well out of the hematoxylin-DAB plane (eosin on an H&E slide), it becomes the third
  (residual) vector, so that its OD goes to the third channel and not into DAB.

Everything else keeps QuPath's "H-DAB default" vectors with residual H x DAB.

References
----------
.. [1] Macenko M et al. A method for normalizing histology slides for quantitative analysis.
       IEEE ISBI 2009:1107-1110 (plane of the two leading singular vectors, 1st/99th
       percentile angles, OD floor 0.15).
.. [2] HistomicsTK ``rgb_separate_stains_macenko_pca`` (same steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import stains

#: Percentile of the in-plane angle taken as each extreme stain direction (Macenko: alpha = 1).
EXTREME_PERCENTILE = 1.0
#: At most this many stained pixels enter the estimate (an even subsample; deterministic).
MAX_PIXELS = 500_000
#: Fewer stained pixels than this: no estimate (too little tissue to trust the directions).
MIN_PIXELS = 1000
#: A second extreme this close to DAB may be a DAB tilted beyond the acceptance cone; it is
#: never made the third vector (eosin lies 22 deg from QuPath's DAB; on the two H&E crops of
#: shared/data the second extreme is 25.6 and 27.7 deg from it).
THIRD_MIN_DAB_ANGLE_DEG = 20.0
#: A real second stain carries a share of the OD: the second singular value is at least this
#: fraction of the first (H&E crops 0.08 and 0.14; hematoxylin-only demo slides 0.03-0.05,
#: where the second extreme is noise and must not become a third vector).
SECOND_STAIN_MIN_SV_RATIO = 0.06


@dataclass(frozen=True, eq=False)
class StainEstimate:
    """The stain matrix a slide is analysed with, and the evidence behind it.

    Attributes
    ----------
    matrix : (3, 3) ndarray of float64
        Rows: hematoxylin, DAB, third stain (or residual H x DAB).
    source : str
        ``"estimated"`` if any row differs from the default, else ``"default"``.
    hematoxylin_angle_deg : float
        Angle of the estimated hematoxylin extreme to the reference (NaN without estimate).
    second_angle_deg : float
        Angle of the second extreme to the reference DAB (NaN without estimate).
    second_off_plane_deg : float
        On a slide without DAB-like pixels, the angle of the second extreme out of the plane of
        the hematoxylin and DAB in use: large for a third, non-DAB stain (eosin); 0 on a slide
        with DAB-like pixels (NaN without estimate).
    dab_fraction : float
        Share of stained pixels whose OD lies within ``max_angle_deg`` of the reference DAB.
    third_stain : bool
        True if the third row is a stain found on the slide rather than H x DAB.
    notes : tuple of str
        Why an estimate was not used, in words.
    """

    matrix: np.ndarray
    source: str
    hematoxylin_angle_deg: float = float("nan")
    second_angle_deg: float = float("nan")
    second_off_plane_deg: float = float("nan")
    dab_fraction: float = 0.0
    third_stain: bool = False
    notes: tuple[str, ...] = ()


def angle_deg(a, b):
    """Angle between two directions in degrees, ignoring sign (0-90)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = abs(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(min(1.0, cos))))


def _positive(v):
    v = v / np.linalg.norm(v)
    return v if v.sum() >= 0 else -v


def sample_pixels(image, mask, max_pixels=MAX_PIXELS):
    """The pixels of ``image`` under ``mask``, as an even subsample of at most ``max_pixels`` rows.

    Parameters
    ----------
    image : (M, N, C) ndarray
    mask : (M, N) ndarray of bool

    Returns
    -------
    (K, C) ndarray
    """
    index = np.flatnonzero(mask)
    return image.reshape(-1, image.shape[-1])[index[:: max(1, -(-len(index) // max_pixels))]]


def stained_od(rgb, mask, i0, *, od_floor):
    """OD of the tissue pixels whose OD norm is at least ``od_floor`` (an even subsample).

    Parameters
    ----------
    rgb : (M, N, 3) ndarray of uint8
    mask : (M, N) ndarray of bool
        Tissue.
    i0 : (3,) array_like
        Background intensity per channel.
    od_floor : float
        Pixels fainter than this carry mostly noise (Macenko's beta, 0.15).

    Returns
    -------
    (K, 3) ndarray of float64
    """
    od = stains.od_table(i0)[np.arange(3), sample_pixels(rgb, mask)]
    return od[np.linalg.norm(od, axis=1) >= od_floor]


def macenko_extremes(od):
    """The two extreme stain directions of Macenko's method.

    Parameters
    ----------
    od : (K, 3) ndarray
        OD of stained pixels.

    Returns
    -------
    low, high : (3,) ndarray of float64
        Unit directions at the 1st and 99th percentile of the in-plane angle, each with a
        non-negative component sum.
    sv_ratio : float
        Second singular value over the first: the share of OD the second direction carries.
    """
    # The stain plane passes through OD 0 (no stain), so the SVD is taken uncentred.
    _, singular, vt = np.linalg.svd(od, full_matrices=False)
    e1, e2 = _positive(vt[0]), vt[1]
    phi = np.arctan2(od @ e2, od @ e1)
    lo, hi = np.percentile(phi, [EXTREME_PERCENTILE, 100 - EXTREME_PERCENTILE])
    low, high = _positive(e1 * np.cos(lo) + e2 * np.sin(lo)), _positive(e1 * np.cos(hi) + e2 * np.sin(hi))
    return low, high, float(singular[1] / singular[0]) if singular[0] > 0 else 0.0


def estimate_stains(od, *, hematoxylin, dab, max_angle_deg, min_dab_fraction, third_min_angle_deg):
    """Choose the slide's stain matrix from the OD of its stained pixels.

    Parameters
    ----------
    od : (K, 3) ndarray
        From :func:`stained_od`.
    hematoxylin, dab : (3,) array_like
        Reference directions (config ``stains``).
    max_angle_deg : float
        An estimated hematoxylin or DAB direction is used only this close to its reference.
    min_dab_fraction : float
        Share of stained pixels with a DAB-like OD direction needed to estimate DAB.
    third_min_angle_deg : float
        A non-DAB second extreme at least this far out of the hematoxylin-DAB plane is taken
        as a third stain.

    Returns
    -------
    StainEstimate
    """
    reference = stains.stain_matrix(hematoxylin, dab)
    if len(od) < MIN_PIXELS:
        return StainEstimate(reference, "default", notes=(f"too few stained pixels ({len(od)}) to estimate stains",))
    low, high, sv_ratio = macenko_extremes(od)
    h_est, second = (low, high) if angle_deg(low, reference[0]) <= angle_deg(high, reference[0]) else (high, low)
    h_angle = angle_deg(h_est, reference[0])
    second_angle = angle_deg(second, reference[1])
    unit = od / np.linalg.norm(od, axis=1, keepdims=True)
    dab_fraction = float(np.mean(unit @ reference[1] >= np.cos(np.radians(max_angle_deg))))
    has_dab = dab_fraction >= min_dab_fraction
    dab_ok = has_dab and second_angle <= max_angle_deg
    notes = []
    if h_angle > max_angle_deg:
        notes.append(f"hematoxylin estimate {h_angle:.1f} deg from reference > {max_angle_deg:g}: default kept")
    if not dab_ok:
        notes.append(f"no DAB estimate: second stain {second_angle:.1f} deg from DAB (max {max_angle_deg:g}), "
                     f"{100 * dab_fraction:.2f}% DAB-like pixels (min {100 * min_dab_fraction:g}%)")
    # A slide with DAB-like pixels whose second extreme is not DAB (a green pen stroke on a
    # positive demo tile) has a stain plane that misses DAB: its hematoxylin extreme is pulled
    # off too (there 13 deg, towards DAB: 30% -> 17% positive), so nothing is estimated.
    trusted = dab_ok or not has_dab
    if not trusted:
        notes.append("the stain plane misses the slide's DAB (ink or artefact?): default vectors kept")
    h_used = h_est if trusted and h_angle <= max_angle_deg else reference[0]
    d_used = second if dab_ok else reference[1]
    # Only on a slide without DAB-like pixels, with a real second stain (not noise), may a
    # non-DAB extreme well out of the H-DAB plane and well away from DAB become the third
    # vector (eosin); on a positive slide it would move real DAB readings.
    real_second = not has_dab and sv_ratio >= SECOND_STAIN_MIN_SV_RATIO
    off_plane = 90.0 - angle_deg(second, np.cross(h_used, d_used)) if real_second else 0.0
    third = None
    if (off_plane >= third_min_angle_deg and angle_deg(second, h_used) > max_angle_deg
            and second_angle >= THIRD_MIN_DAB_ANGLE_DEG):
        third = second
    matrix = stains.stain_matrix(h_used, d_used, third)
    source = "default" if np.allclose(matrix, reference) else "estimated"
    return StainEstimate(matrix, source, h_angle, second_angle, off_plane, dab_fraction,
                         third_stain=third is not None, notes=tuple(notes))
