"""Synthetic CXCR4 IHC tiles with per-cell ground truth, and the demo cohort.

Tiles are rendered from concentration maps in stain optical-density (OD) units with the
Beer-Lambert law, ``I_c = I0_c * 10 ** -(H * h_c + D * d_c)``, then blurred by a Gaussian
point-spread function, given intensity-dependent noise and rounded to uint8. The render
deliberately departs from what the analysis assumes: the stain directions are rotated a few
degrees away from QuPath's "H-DAB default" and the background intensity ``I0`` differs per
channel and is below 255, so scores measured on these tiles are not flattered by a generator
that shares the analysis's model.

Geometry is specified in micrometres and converted with the pixel size ``mpp``: tumour nests
of polygonal epithelial cells (Voronoi cells of jittered hexagonal seeds), stroma with
elongated fibroblasts and aggregates of lymphocytes, and glass with an irregular tissue edge.
Every cell carries a truth record: nucleus centroid, areas, the mean DAB and hematoxylin
concentration actually rendered in each compartment (before blur and noise), its staining
pattern and its classes under the default thresholds.

Compartment codes follow the analysis: 0 background, 1 nucleus, 2 cytoplasm, 3 membrane. The
membrane band is the pixels within ``membrane_band_um`` of the cell boundary (shared with a
neighbour, or the outer band where the boundary is not shared); the image border is not a
boundary.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile
from scipy.spatial import cKDTree

from .config import default_config
from .constants import BACKGROUND, CYTOPLASM, MEMBRANE, NUCLEUS
# The analysis assumes QuPath's "H-DAB default" directions; the generator renders with
# directions rotated away from them.
from .stains import QUPATH_DAB, QUPATH_HEMATOXYLIN

__all__ = [
    "DEFAULT_THRESHOLDS",
    "TRUTH_COLUMNS",
    "SyntheticTile",
    "TileSpec",
    "beer_lambert",
    "generate_tile",
    "render_rgb",
    "truth_class",
    "write_demo_cohort",
    "write_tile",
]

#: Mean DAB OD at or above which a compartment is 1+, 2+, 3+: the configuration's default
#: ``thresholds`` (QuPath's; DESIGN.md sec. 5).
DEFAULT_THRESHOLDS = tuple(default_config()["thresholds"])

#: Columns of the truth table, in order.
TRUTH_COLUMNS = (
    "cell_id", "x", "y", "x_um", "y_um", "cell_type", "nucleus_area_um2", "cell_area_um2",
    "dab_nucleus", "dab_cytoplasm", "dab_membrane", "hematoxylin_nucleus", "pattern",
    "class_membrane", "class_cytoplasm", "class", "membrane_exposed_fraction",
)

_CELL_TYPES = np.array(["tumour", "immune", "stroma"])
_NO_CELL, _TUMOUR, _IMMUNE, _STROMA = -1, 0, 1, 2  # cell type codes; label 0 is no cell
_PATTERNS = np.array(["negative", "membrane", "cytoplasm", "mixed"])
_NEGATIVE, _PAT_MEMBRANE, _PAT_CYTOPLASM, _PAT_MIXED = 0, 1, 2, 3

_SEED_JITTER = 0.12  # tumour seed jitter, fraction of the cell diameter
_SEED_MIN_DEPTH = 0.35  # tumour seeds lie this many cell diameters inside their nest
_NEST_REACH = 0.8  # nest pixels farther than this many diameters from a seed become stroma
_MIN_NUCLEUS_UM2 = 8.0  # cells whose rendered nucleus is smaller are removed
_CELL_CYTOPLASM_UM = 1.0  # cytoplasm rim of lymphocytes and fibroblasts
_FIBROBLAST_SPACING_UM = 20.0  # candidate grids; conflicting candidates are then removed
_LYMPHOCYTE_SPACING_UM = 8.0
_LYMPHOCYTE_MIN_DISTANCE_UM = 7.5
_FIBROBLAST_LYMPHOCYTE_DISTANCE_UM = 10.0
_STROMA_CELL_CLEARANCE_UM = 4.0  # stroma cells keep this far from nests and glass
_I0_CHANNEL_SPREAD = 4.0  # per-channel I0 departs this much from the tile's white level


def _check_range(name, value, lo, hi):
    """Raise ValueError unless ``value`` is a (low, high) pair inside [lo, hi] with low <= high."""
    if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
        raise ValueError(f"{name} must be (low, high) with {lo} <= low <= high <= {hi}, got {value!r}")


def _check_scalar(name, value, lo, hi):
    """Raise ValueError unless ``lo <= value <= hi``."""
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")


def _check_weights(name, value):
    """Raise ValueError unless ``value`` is three non-negative weights with a positive sum."""
    if len(value) != 3 or min(value) < 0 or sum(value) <= 0:
        raise ValueError(f"{name} must be 3 non-negative weights with a positive sum, got {value!r}")


@dataclass(frozen=True)
class TileSpec:
    """What a synthetic tile contains and how it is rendered. Sizes are in micrometres.

    Parameters
    ----------
    size_um : tuple of float
        Field of view (height, width) in um; the image has ``round(size_um / mpp)`` pixels.
    mpp : float
        Pixel size (um/px) of the rendered and written image.
    glass_fraction : float
        Fraction of the field without tissue, in [0, 0.99].
    tissue_layout : {'edge', 'fragment'}
        ``'edge'``: glass along one random side with an irregular tissue edge. ``'fragment'``:
        one irregular tissue fragment in the middle of the glass.
    nest_fraction : float
        Fraction of the tissue inside tumour nests, in [0, 1].
    nest_scale_um : float
        Correlation length of the random field whose upper level set forms the nests.
    cell_diameter_um : tuple of float
        Range of the tumour seed spacing (about the cell diameter), drawn per nest.
    nucleus_area_um2 : tuple of float
        Range of the tumour nucleus area, further capped at half the nominal cell area.
    nucleus_hematoxylin : tuple of float
        Range of the per-cell mean hematoxylin OD of tumour nuclei (chromatin texture on top).
    cytoplasm_hematoxylin : tuple of float
        Range of the per-cell hematoxylin OD of tumour cytoplasm and membrane.
    stroma_hematoxylin : tuple of float
        Range of the faint hematoxylin OD of the stroma background (fibrous texture).
    positive_fraction : float
        Exact fraction (rounded to a cell count) of tumour cells that are CXCR4-positive.
    class_weights : tuple of float
        Relative frequency of 1+, 2+ and 3+ among positive cells.
    pattern_weights : tuple of float
        Relative frequency of the membrane, cytoplasm and mixed patterns among positive cells.
        ``cytoplasm`` stains the whole cell outside the nucleus (the band included) at one
        level; ``mixed`` stains the band at the cell's class and the cytoplasm at a class
        between 1+ and it.
    positive_clustering : float
        0 places positive cells at random; towards 1 they gather where a smooth random field
        (scale ``nest_scale_um``) is high, as heterogeneous staining does.
    class_margin : float
        Distance kept between drawn DAB levels and the thresholds, so truth classes are not
        ambiguous: class k is drawn in ``[t_k + margin, t_{k+1} - margin]``.
    max_dab : float
        Upper end of the 3+ DAB level range (OD).
    negative_dab_max : float
        Unstained compartments get a per-cell DAB level in ``[0, negative_dab_max]``.
    membrane_band_um : float
        Width of the membrane band on each side of a cell boundary.
    fibroblast_density_mm2 : float
        Fibroblasts per mm^2 of stroma (fewer if they do not fit).
    lymphocyte_density_mm2 : float
        Lymphocytes per mm^2 of stroma (fewer if they do not fit), gathered in aggregates.
    lymphocyte_positive_fraction : float
        Fraction of lymphocytes with membrane DAB (classes drawn with ``class_weights``).
    stain_angle_deg : float
        Each stain direction is rotated by exactly this angle (in a random direction) away from
        the QuPath vector; at most 10.
    stain_angle_min_deg : float or None
        If given, each stain's angle is drawn uniformly in ``[stain_angle_min_deg,
        stain_angle_deg]`` instead (jitter of size and direction); ``None`` keeps it exact.
    i0_range : tuple of float
        Range of the background intensity I0: a white level is drawn in it and each channel
        departs from it by up to 4 (clipped to the range), as an imperfect white balance does.
    i0_independent : bool
        Draw each channel's I0 independently and uniformly in ``i0_range`` instead (a strong
        colour cast, as an uncalibrated scanner gives).
    blur_sigma_um : tuple of float
        Range of the Gaussian PSF sigma (0.25-0.4 um is 0.5-0.8 px at 0.5 um/px).
    noise_sigma : float
        Standard deviation of the intensity noise on glass (8-bit units); it scales with
        ``sqrt(I / I0)`` like shot noise.
    nest_heterogeneity : float
        0 lets positivity ignore nest boundaries; towards 1 a random offset per nest dominates
        which cells are positive, so some nests are largely positive and others negative.
    intratumoral_lymphocyte_fraction : float
        Fraction of tumour-nest seeds that become lymphocytes instead (small round dark nuclei
        with a 1 um rim, inside the nest; stained like the stroma lymphocytes).
    fold_fraction : float
        Fraction of the field crossed by a tissue fold: a wavy band of doubled tissue that adds
        hematoxylin (0.12-0.25 OD) and nonspecific brown (up to ``fold_dab``) over everything in
        it, cells included. Cells whose nucleus centroid lies in it have ``in_fold`` True.
    fold_dab : float
        Upper end of the nonspecific DAB OD a fold adds (drawn per tile from half of it to it).
    debris_density_mm2 : float
        Necrotic debris: brown blobs (1-3.5 um radius, DAB 0.3-0.9 OD, some hematoxylin) per
        mm^2 of cell-free tissue, placed only outside cells.
    stroma_dab : float
        Mean faint nonspecific DAB OD of the cell-free tissue (a smooth field about it).
    """

    size_um: tuple[float, float] = (512.0, 512.0)
    mpp: float = 0.5
    glass_fraction: float = 0.15
    tissue_layout: str = "edge"
    nest_fraction: float = 0.55
    nest_scale_um: float = 45.0
    cell_diameter_um: tuple[float, float] = (12.0, 18.0)
    nucleus_area_um2: tuple[float, float] = (30.0, 80.0)
    nucleus_hematoxylin: tuple[float, float] = (0.3, 0.7)
    cytoplasm_hematoxylin: tuple[float, float] = (0.04, 0.1)
    stroma_hematoxylin: tuple[float, float] = (0.03, 0.08)
    positive_fraction: float = 0.4
    class_weights: tuple[float, float, float] = (0.4, 0.35, 0.25)
    pattern_weights: tuple[float, float, float] = (0.5, 0.2, 0.3)
    positive_clustering: float = 0.5
    class_margin: float = 0.04
    max_dab: float = 1.0
    negative_dab_max: float = 0.05
    membrane_band_um: float = 1.0
    fibroblast_density_mm2: float = 600.0
    lymphocyte_density_mm2: float = 1500.0
    lymphocyte_positive_fraction: float = 0.0
    stain_angle_deg: float = 5.0
    i0_range: tuple[float, float] = (225.0, 250.0)
    blur_sigma_um: tuple[float, float] = (0.25, 0.4)
    noise_sigma: float = 2.0
    stain_angle_min_deg: float | None = None
    i0_independent: bool = False
    nest_heterogeneity: float = 0.0
    intratumoral_lymphocyte_fraction: float = 0.0
    fold_fraction: float = 0.0
    fold_dab: float = 0.06
    debris_density_mm2: float = 0.0
    stroma_dab: float = 0.0

    def __post_init__(self):
        _check_range("size_um", self.size_um, 10.0, 1e5)
        _check_scalar("mpp", self.mpp, 0.05, 10.0)
        _check_scalar("glass_fraction", self.glass_fraction, 0.0, 0.99)
        if self.tissue_layout not in ("edge", "fragment"):
            raise ValueError(f"tissue_layout must be 'edge' or 'fragment', got {self.tissue_layout!r}")
        _check_scalar("nest_fraction", self.nest_fraction, 0.0, 1.0)
        _check_scalar("nest_scale_um", self.nest_scale_um, 5.0, 1e4)
        _check_range("cell_diameter_um", self.cell_diameter_um, 4.0, 100.0)
        _check_range("nucleus_area_um2", self.nucleus_area_um2, 5.0, 1000.0)
        _check_range("nucleus_hematoxylin", self.nucleus_hematoxylin, 0.0, 3.0)
        _check_range("cytoplasm_hematoxylin", self.cytoplasm_hematoxylin, 0.0, 3.0)
        _check_range("stroma_hematoxylin", self.stroma_hematoxylin, 0.0, 3.0)
        _check_scalar("positive_fraction", self.positive_fraction, 0.0, 1.0)
        _check_weights("class_weights", self.class_weights)
        _check_weights("pattern_weights", self.pattern_weights)
        _check_scalar("positive_clustering", self.positive_clustering, 0.0, 1.0)
        _check_scalar("class_margin", self.class_margin, 0.0, 0.09)
        _check_scalar("max_dab", self.max_dab, DEFAULT_THRESHOLDS[2] + 2 * self.class_margin, 3.0)
        _check_scalar("negative_dab_max", self.negative_dab_max, 0.0,
                      DEFAULT_THRESHOLDS[0] - self.class_margin)
        _check_scalar("membrane_band_um", self.membrane_band_um, 0.1, 5.0)
        _check_scalar("fibroblast_density_mm2", self.fibroblast_density_mm2, 0.0, 1e5)
        _check_scalar("lymphocyte_density_mm2", self.lymphocyte_density_mm2, 0.0, 1e5)
        _check_scalar("lymphocyte_positive_fraction", self.lymphocyte_positive_fraction, 0.0, 1.0)
        _check_scalar("stain_angle_deg", self.stain_angle_deg, 0.0, 10.0)
        _check_range("i0_range", self.i0_range, 1.0, 255.0)
        _check_range("blur_sigma_um", self.blur_sigma_um, 0.0, 5.0)
        _check_scalar("noise_sigma", self.noise_sigma, 0.0, 50.0)
        if self.stain_angle_min_deg is not None:
            _check_scalar("stain_angle_min_deg", self.stain_angle_min_deg, 0.0, self.stain_angle_deg)
        _check_scalar("nest_heterogeneity", self.nest_heterogeneity, 0.0, 1.0)
        _check_scalar("intratumoral_lymphocyte_fraction", self.intratumoral_lymphocyte_fraction, 0.0, 1.0)
        _check_scalar("fold_fraction", self.fold_fraction, 0.0, 0.5)
        _check_scalar("fold_dab", self.fold_dab, 0.0, 1.0)
        _check_scalar("debris_density_mm2", self.debris_density_mm2, 0.0, 1e5)
        _check_scalar("stroma_dab", self.stroma_dab, 0.0, DEFAULT_THRESHOLDS[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Image shape (rows, columns) in pixels."""
        return (round(self.size_um[0] / self.mpp), round(self.size_um[1] / self.mpp))


@dataclass(frozen=True, eq=False)
class SyntheticTile:
    """A rendered tile and its ground truth.

    Attributes
    ----------
    rgb : ndarray of uint8, shape (M, N, 3)
        The rendered image.
    mpp : float
        Pixel size (um/px).
    truth : pandas.DataFrame
        One row per cell, columns :data:`TRUTH_COLUMNS` (then ``in_fold``, bool, when the spec
        has a fold); ``cell_id`` is the cell's value in the label images. A compartment without pixels (e.g. the cytoplasm of a lymphocyte whose rim
        is all membrane band) has a NaN mean.
    nucleus_labels, cell_labels : ndarray of int32, shape (M, N)
        Truth nucleus and cell label images (0 = no cell).
    compartments : ndarray of uint8, shape (M, N)
        0 background, 1 nucleus, 2 cytoplasm, 3 membrane band.
    hematoxylin, dab : ndarray of float32, shape (M, N)
        Concentration maps (OD units) as rendered, before blur and noise: the cells' own stain
        plus any stroma brown, debris and fold (which the truth means leave out).
    tissue_mask : ndarray of bool, shape (M, N)
        True on tissue, False on glass.
    i0 : ndarray of float64, shape (3,)
        Background intensity per RGB channel used to render.
    stain_vectors : ndarray of float64, shape (2, 3)
        Unit OD directions of hematoxylin (row 0) and DAB (row 1) used to render.
    blur_sigma_um : float
        PSF sigma used to render.
    fold_mask, debris_mask : ndarray of bool, shape (M, N)
        Pixels of the tissue fold and of debris blobs (all False when the spec has none).
    """

    rgb: np.ndarray
    mpp: float
    truth: pd.DataFrame
    nucleus_labels: np.ndarray
    cell_labels: np.ndarray
    compartments: np.ndarray
    hematoxylin: np.ndarray
    dab: np.ndarray
    tissue_mask: np.ndarray
    i0: np.ndarray
    stain_vectors: np.ndarray
    blur_sigma_um: float
    fold_mask: np.ndarray
    debris_mask: np.ndarray


@dataclass(frozen=True)
class _Cells:
    """Per-label cell geometry; index 0 is unused (background)."""

    labels: np.ndarray  # int32 (M, N) cell labels
    kind: np.ndarray  # cell type code per label
    cy: np.ndarray  # nucleus centre row (px)
    cx: np.ndarray  # nucleus centre column (px)
    a: np.ndarray  # nucleus semi-axis along theta (px)
    b: np.ndarray  # nucleus semi-axis across theta (px)
    theta: np.ndarray  # nucleus orientation (rad, from the column axis)


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def beer_lambert(hematoxylin, dab, *, i0, stain_vectors):
    """Transmitted intensity of a hematoxylin + DAB stained section.

    Parameters
    ----------
    hematoxylin, dab : ndarray, shape (M, N)
        Stain concentrations in OD units along the unit stain directions.
    i0 : array_like, shape (3,)
        Background (glass) intensity per RGB channel.
    stain_vectors : array_like, shape (2, 3)
        OD directions of hematoxylin (row 0) and DAB (row 1); normalised to unit length here.

    Returns
    -------
    ndarray of float32, shape (M, N, 3)
        ``I_c = I0_c * 10 ** -(H * h_c + D * d_c)``.

    Raises
    ------
    ValueError
        If shapes disagree or stain vectors are not two positive-length 3-vectors.

    References
    ----------
    Ruifrok AC, Johnston DA. Quantification of histochemical staining by color deconvolution.
    Anal Quant Cytol Histol 2001;23:291-299.

    Examples
    --------
    >>> import numpy as np
    >>> one = np.ones((1, 1), np.float32)
    >>> i = beer_lambert(one, 0 * one, i0=[240, 240, 240], stain_vectors=[[1, 0, 0], [0, 1, 0]])
    >>> [round(float(v), 1) for v in i[0, 0]]
    [24.0, 240.0, 240.0]
    """
    hematoxylin = np.asarray(hematoxylin, np.float32)
    dab = np.asarray(dab, np.float32)
    if hematoxylin.shape != dab.shape or hematoxylin.ndim != 2:
        raise ValueError("hematoxylin and dab must be 2-D of one shape, "
                         f"got {hematoxylin.shape} and {dab.shape}")
    vectors = np.asarray(stain_vectors, np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True) if vectors.shape == (2, 3) else None
    if norms is None or np.any(norms == 0):
        raise ValueError(f"stain_vectors must be two non-zero 3-vectors, got {stain_vectors!r}")
    vectors = (vectors / norms).astype(np.float32)
    i0 = np.asarray(i0, np.float32).reshape(3)
    od = hematoxylin[..., None] * vectors[0] + dab[..., None] * vectors[1]
    return i0 * np.exp(od * np.float32(-math.log(10.0)))


def render_rgb(hematoxylin, dab, *, i0, stain_vectors, blur_sigma_px=0.0, noise_sigma=0.0, rng=None):
    """Render concentration maps to an 8-bit RGB image (Beer-Lambert, PSF blur, noise).

    Parameters
    ----------
    hematoxylin, dab : ndarray, shape (M, N)
        Stain concentrations in OD units.
    i0 : array_like, shape (3,)
        Background intensity per RGB channel.
    stain_vectors : array_like, shape (2, 3)
        OD directions of hematoxylin and DAB.
    blur_sigma_px : float, optional
        Gaussian PSF sigma in pixels, applied to the intensity; 0 disables it.
    noise_sigma : float, optional
        Noise standard deviation at ``I = mean(i0)``; it scales with ``sqrt(I / mean(i0))``.
    rng : numpy.random.Generator, optional
        Source of the noise; required when ``noise_sigma > 0``.

    Returns
    -------
    ndarray of uint8, shape (M, N, 3)
        Intensities clipped to [0, 255] and rounded.

    Raises
    ------
    ValueError
        If ``noise_sigma > 0`` without ``rng``, or for the cases of :func:`beer_lambert`.
    """
    if noise_sigma > 0 and rng is None:
        raise ValueError(f"noise_sigma={noise_sigma!r} needs an rng")
    intensity = beer_lambert(hematoxylin, dab, i0=i0, stain_vectors=stain_vectors)
    if blur_sigma_px > 0:
        intensity = cv2.GaussianBlur(intensity, (0, 0), blur_sigma_px, borderType=cv2.BORDER_REFLECT)
    if noise_sigma > 0:
        white = np.float32(np.mean(i0))
        scale = np.sqrt(np.maximum(intensity, 0) / white) * np.float32(noise_sigma)
        intensity = intensity + scale * rng.standard_normal(intensity.shape, dtype=np.float32)
    return np.rint(np.clip(intensity, 0, 255)).astype(np.uint8)


def _rotate_away(vector, angle_deg, rng):
    """Unit ``vector`` rotated by ``angle_deg`` towards a random perpendicular direction."""
    v = np.asarray(vector, np.float64)
    v = v / np.linalg.norm(v)
    u = rng.standard_normal(3)
    u -= u.dot(v) * v
    u /= np.linalg.norm(u)
    angle = math.radians(angle_deg)
    return math.cos(angle) * v + math.sin(angle) * u


def _render_parameters(spec, rng):
    """Draw I0 per channel, rotated stain directions and the PSF sigma for one tile."""
    lo, hi = spec.i0_range
    if spec.i0_independent:
        i0 = rng.uniform(lo, hi, 3)
    else:
        i0 = np.clip(rng.uniform(lo, hi) + rng.uniform(-_I0_CHANNEL_SPREAD, _I0_CHANNEL_SPREAD, 3), lo, hi)

    def angle():
        if spec.stain_angle_min_deg is None:
            return spec.stain_angle_deg
        return rng.uniform(spec.stain_angle_min_deg, spec.stain_angle_deg)

    vectors = np.stack([_rotate_away(QUPATH_HEMATOXYLIN, angle(), rng), _rotate_away(QUPATH_DAB, angle(), rng)])
    return i0, vectors, float(rng.uniform(*spec.blur_sigma_um))


# --------------------------------------------------------------------------------------
# Random fields and point sets
# --------------------------------------------------------------------------------------


def _smooth_field(shape, *, scale_px, rng):
    """Zero-mean, unit-variance Gaussian random field with correlation length ``scale_px``.

    Generated on a coarse grid and upsampled, so the cost does not grow with ``scale_px``.
    """
    step = max(1, int(scale_px // 3))
    coarse_shape = (shape[0] // step + 3, shape[1] // step + 3)
    coarse = cv2.GaussianBlur(rng.standard_normal(coarse_shape).astype(np.float32), (0, 0),
                              scale_px / step, borderType=cv2.BORDER_REFLECT)
    field = cv2.resize(coarse, (coarse_shape[1] * step, coarse_shape[0] * step),
                       interpolation=cv2.INTER_LINEAR)[: shape[0], : shape[1]]
    return (field - field.mean()) / max(float(field.std()), 1e-12)


def _texture(shape, *, sigma_px, rng):
    """Fine zero-mean, unit-variance texture: white noise blurred with ``sigma_px``."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    field = cv2.GaussianBlur(noise, (0, 0), sigma_px, borderType=cv2.BORDER_REFLECT)
    return (field - field.mean()) / max(float(field.std()), 1e-12)


def _grid_points(shape, *, spacing, jitter, rng):
    """Jittered square grid of (row, col) points covering ``shape``."""
    rows = np.arange(rng.uniform(0, spacing), shape[0], spacing)
    cols = np.arange(rng.uniform(0, spacing), shape[1], spacing)
    pts = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    pts += rng.uniform(-jitter, jitter, pts.shape)
    return np.clip(pts, 0, np.array(shape) - 1)


def _hex_points(box, *, spacing, jitter, rng):
    """Jittered hexagonal grid of (row, col) points covering ``box = (row0, col0, h, w)``."""
    row0, col0, height, width = box
    pitch = spacing * math.sqrt(3) / 2
    rows = np.arange(row0 - spacing + rng.uniform(0, pitch), row0 + height + spacing, pitch)
    cols = np.arange(col0 - spacing + rng.uniform(0, spacing), col0 + width + spacing, spacing)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    cc = cc + (np.arange(rows.size) % 2)[:, None] * (spacing / 2)
    pts = np.column_stack([rr.ravel(), cc.ravel()])
    return pts + rng.uniform(-jitter, jitter, pts.shape)


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------


def _edge_tissue(shape, *, spec, rng):
    """Tissue mask with glass along one random side behind an irregular edge."""
    side = int(rng.integers(4))
    depth_len, along_len = (shape[0], shape[1]) if side < 2 else (shape[1], shape[0])
    glass_depth = spec.glass_fraction * depth_len
    wobble = min(15.0 / spec.mpp, 0.5 * glass_depth)
    profile = _smooth_field((1, along_len), scale_px=25.0 / spec.mpp, rng=rng)[0] * wobble
    profile += _smooth_field((1, along_len), scale_px=2.0 / spec.mpp, rng=rng)[0] * (1.5 / spec.mpp)
    tissue = np.arange(depth_len)[:, None] >= glass_depth + profile[None, :]
    if side == 1:
        tissue = tissue[::-1]
    if side >= 2:
        tissue = tissue.T if side == 2 else tissue.T[:, ::-1]
    return np.ascontiguousarray(tissue)


def _fragment_tissue(shape, *, spec, rng):
    """Tissue mask of one irregular fragment covering ``1 - glass_fraction`` of the field."""
    radius = math.sqrt((1 - spec.glass_fraction) * shape[0] * shape[1] / math.pi)
    centre = np.array(shape) / 2 + rng.uniform(-0.1, 0.1, 2) * np.array(shape)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    angle = np.arctan2(rows - centre[0], cols - centre[1])
    wobble = sum(rng.uniform(0, 0.08) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in range(2, 6))
    return np.hypot(rows - centre[0], cols - centre[1]) <= radius * (1 + wobble)


def _tissue_mask(shape, *, spec, rng):
    """Tissue (True) and glass (False) as laid out by ``spec.tissue_layout``."""
    if spec.glass_fraction == 0:
        return np.ones(shape, bool)
    if spec.tissue_layout == "fragment":
        return _fragment_tissue(shape, spec=spec, rng=rng)
    return _edge_tissue(shape, spec=spec, rng=rng)


def _nest_mask(tissue, *, spec, rng):
    """Tumour nests: the upper level set of a smooth field covering ``nest_fraction`` of tissue."""
    field = _smooth_field(tissue.shape, scale_px=spec.nest_scale_um / spec.mpp, rng=rng)
    field += 0.25 * _smooth_field(tissue.shape, scale_px=6.0 / spec.mpp, rng=rng)
    sample = field[::4, ::4][tissue[::4, ::4]]
    if spec.nest_fraction == 0 or sample.size == 0:
        return np.zeros(tissue.shape, bool)
    return (field > np.quantile(sample, 1 - spec.nest_fraction)) & tissue


def _nest_cells(nest, *, spec, rng, first_label):
    """Voronoi tumour cells filling each nest; returns labels, seed points and diameters (px)."""
    labels = np.zeros(nest.shape, np.int32)
    n_comp, comp, stats, _ = cv2.connectedComponentsWithStats(nest.astype(np.uint8), connectivity=8)
    depth = cv2.distanceTransform(nest.astype(np.uint8), cv2.DIST_L2, 5)
    seeds, diameters = [], []
    next_label = first_label
    for k in range(1, n_comp):
        col0, row0, width, height = (int(v) for v in stats[k, :4])
        diameter = rng.uniform(*spec.cell_diameter_um) / spec.mpp
        pts = _hex_points((row0, col0, height, width), spacing=diameter,
                          jitter=_SEED_JITTER * diameter, rng=rng)
        rc = np.rint(pts).astype(np.int64)
        inside = ((rc[:, 0] >= row0) & (rc[:, 0] < row0 + height)
                  & (rc[:, 1] >= col0) & (rc[:, 1] < col0 + width))
        pts, rc = pts[inside], rc[inside]
        keep = (comp[rc[:, 0], rc[:, 1]] == k) & (depth[rc[:, 0], rc[:, 1]] >= _SEED_MIN_DEPTH * diameter)
        pts, rc = pts[keep], rc[keep]
        if len(pts) == 0:
            continue
        local = rc - (row0, col0)
        source = np.ones((height, width), np.uint8)
        source[local[:, 0], local[:, 1]] = 0
        dist, voronoi = cv2.distanceTransformWithLabels(source, cv2.DIST_L2, 5,
                                                        labelType=cv2.DIST_LABEL_PIXEL)
        lut = np.zeros(voronoi.max() + 1, np.int32)
        lut[voronoi[local[:, 0], local[:, 1]]] = np.arange(next_label, next_label + len(pts))
        region = (comp[row0:row0 + height, col0:col0 + width] == k) & (dist <= _NEST_REACH * diameter)
        labels[row0:row0 + height, col0:col0 + width][region] = lut[voronoi[region]]
        seeds.append(pts)
        diameters.append(np.full(len(pts), diameter))
        next_label += len(pts)
    if not seeds:
        return labels, np.zeros((0, 2)), np.zeros(0)
    return labels, np.concatenate(seeds), np.concatenate(diameters)


def _stroma_seeds(stroma, *, spec, rng):
    """Fibroblast and lymphocyte centres (row, col px) in stroma, lymphocytes in aggregates."""
    clearance = cv2.distanceTransform(stroma.astype(np.uint8), cv2.DIST_L2, 5)
    room = clearance >= _STROMA_CELL_CLEARANCE_UM / spec.mpp
    area_mm2 = stroma.sum() * spec.mpp**2 * 1e-6

    def candidates(spacing_um, min_distance_um):
        pts = _grid_points(stroma.shape, spacing=spacing_um / spec.mpp,
                           jitter=0.5 * spacing_um / spec.mpp, rng=rng)
        pts = pts[rng.permutation(len(pts))]
        rc = np.rint(pts).astype(np.int64)
        pts = pts[room[rc[:, 0], rc[:, 1]]]
        pairs = cKDTree(pts).query_pairs(min_distance_um / spec.mpp, output_type="ndarray")
        return np.delete(pts, np.unique(pairs.max(axis=1)), axis=0)

    fib = candidates(_FIBROBLAST_SPACING_UM, 0.7 * _FIBROBLAST_SPACING_UM)
    fib = fib[rng.permutation(len(fib))[: round(spec.fibroblast_density_mm2 * area_mm2)]]
    lym = candidates(_LYMPHOCYTE_SPACING_UM, _LYMPHOCYTE_MIN_DISTANCE_UM)
    if len(fib) and len(lym):
        gap, _ = cKDTree(fib).query(lym)
        lym = lym[gap >= _FIBROBLAST_LYMPHOCYTE_DISTANCE_UM / spec.mpp]
    n_lym = min(len(lym), round(spec.lymphocyte_density_mm2 * area_mm2))
    if n_lym:
        aggregates = _smooth_field(stroma.shape, scale_px=40.0 / spec.mpp, rng=rng)
        rc = np.rint(lym).astype(np.int64)
        weight = np.exp(2.0 * aggregates[rc[:, 0], rc[:, 1]]).astype(np.float64)
        lym = lym[rng.choice(len(lym), size=n_lym, replace=False, p=weight / weight.sum())]
    return fib, lym[:n_lym]


def _nearest_seed_labels(shape, points, first_label):
    """Label image assigning every pixel to its nearest point (``first_label + index``)."""
    rc = np.rint(points).astype(np.int64)
    source = np.ones(shape, np.uint8)
    source[rc[:, 0], rc[:, 1]] = 0
    _, voronoi = cv2.distanceTransformWithLabels(source, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(voronoi.max() + 1, np.int32)
    lut[voronoi[rc[:, 0], rc[:, 1]]] = np.arange(first_label, first_label + len(points))
    return lut[voronoi]


def _ellipse_value(index, labels_flat, cells, *, width, grow=0.0):
    """``(u / (a + grow))**2 + (v / (b + grow))**2`` of flat pixels ``index`` about their cell's nucleus."""
    lab = labels_flat[index]
    rows, cols = np.divmod(index, width)
    f32 = np.float32
    dy = rows.astype(f32) - cells.cy.astype(f32)[lab]
    dx = cols.astype(f32) - cells.cx.astype(f32)[lab]
    cos, sin = np.cos(cells.theta).astype(f32)[lab], np.sin(cells.theta).astype(f32)[lab]
    u = (dx * cos + dy * sin) / (cells.a.astype(f32) + f32(grow))[lab]
    v = (dy * cos - dx * sin) / (cells.b.astype(f32) + f32(grow))[lab]
    return u * u + v * v


def _tumour_nuclei(seeds, diameters, *, spec, rng):
    """Nucleus ellipse (centre, semi-axes, angle; px) for each tumour seed."""
    n = len(seeds)
    cap_um2 = 0.5 * (math.sqrt(3) / 2) * (diameters * spec.mpp) ** 2
    area_px = np.minimum(rng.uniform(*spec.nucleus_area_um2, n), cap_um2) / spec.mpp**2
    aspect = rng.uniform(1.0, 1.5, n)
    centre = seeds + rng.uniform(-0.5, 0.5, (n, 2)) / spec.mpp
    a = np.sqrt(area_px * aspect / np.pi)
    return centre, a, a / aspect, rng.uniform(0, np.pi, n)


def _stroma_nuclei(fib, lym, *, spec, rng, fibre_angle):
    """Nucleus ellipses of fibroblasts (elongated along the fibres) and lymphocytes (round)."""
    n_fib, n_lym = len(fib), len(lym)
    a_fib = rng.uniform(5.0, 8.0, n_fib) / spec.mpp
    b_fib = rng.uniform(1.25, 2.0, n_fib) / spec.mpp
    theta_fib = fibre_angle + rng.normal(0, math.radians(15), n_fib)
    r_lym = rng.uniform(2.5, 3.5, n_lym) / spec.mpp
    aspect = rng.uniform(1.0, 1.15, n_lym)
    return (np.concatenate([fib, lym]), np.concatenate([a_fib, r_lym * np.sqrt(aspect)]),
            np.concatenate([b_fib, r_lym / np.sqrt(aspect)]),
            np.concatenate([theta_fib, rng.uniform(0, np.pi, n_lym)]))


def _cells(tissue, *, spec, rng, fibre_angle):
    """Cell label image and per-label nucleus geometry for tumour, immune and stroma cells."""
    nest = _nest_mask(tissue, spec=spec, rng=rng)
    labels, seeds, diameters = _nest_cells(nest, spec=spec, rng=rng, first_label=1)
    t_centre, t_a, t_b, t_theta = _tumour_nuclei(seeds, diameters, spec=spec, rng=rng)
    stroma = tissue & (labels == 0)
    fib, lym = _stroma_seeds(stroma, spec=spec, rng=rng)
    s_centre, s_a, s_b, s_theta = _stroma_nuclei(fib, lym, spec=spec, rng=rng, fibre_angle=fibre_angle)
    n_t = len(seeds)
    kind = np.concatenate([[_NO_CELL], np.full(n_t, _TUMOUR), np.full(len(fib), _STROMA),
                           np.full(len(lym), _IMMUNE)])
    centre = np.concatenate([np.zeros((1, 2)), t_centre, s_centre])
    cells = _Cells(labels=labels, kind=kind, cy=centre[:, 0], cx=centre[:, 1],
                   a=np.concatenate([[1.0], t_a, s_a]), b=np.concatenate([[1.0], t_b, s_b]),
                   theta=np.concatenate([[0.0], t_theta, s_theta]))
    if len(s_centre):
        nearest = _nearest_seed_labels(tissue.shape, s_centre, first_label=n_t + 1)
        index = np.flatnonzero(stroma)
        inside = _ellipse_value(index, nearest.ravel(), cells, width=tissue.shape[1],
                                grow=_CELL_CYTOPLASM_UM / spec.mpp) <= 1
        labels.ravel()[index[inside]] = nearest.ravel()[index[inside]]
    if spec.intratumoral_lymphocyte_fraction > 0 and n_t:
        cells = _nest_lymphocytes(cells, seeds, spec=spec, rng=rng)
    return cells


def _nest_lymphocytes(cells, seeds, *, spec, rng):
    """Turn a fraction of the tumour seeds (labels 1..len(seeds)) into lymphocytes in the nest.

    The lymphocyte keeps a round nucleus of 2.5-3.5 um radius at its seed and a 1 um rim; the
    rest of the seed's Voronoi cell becomes cell-free tissue.
    """
    chosen = 1 + rng.permutation(len(seeds))[: round(spec.intratumoral_lymphocyte_fraction * len(seeds))]
    kind, cy, cx = cells.kind.copy(), cells.cy.copy(), cells.cx.copy()
    a, b, theta = cells.a.copy(), cells.b.copy(), cells.theta.copy()
    kind[chosen] = _IMMUNE
    cy[chosen], cx[chosen] = seeds[chosen - 1, 0], seeds[chosen - 1, 1]
    a[chosen] = b[chosen] = rng.uniform(2.5, 3.5, len(chosen)) / spec.mpp
    cells = _Cells(labels=cells.labels, kind=kind, cy=cy, cx=cx, a=a, b=b, theta=theta)
    flat = cells.labels.ravel()
    index = np.flatnonzero(np.isin(flat, chosen))
    outside = _ellipse_value(index, flat, cells, width=cells.labels.shape[1],
                             grow=_CELL_CYTOPLASM_UM / spec.mpp) > 1
    flat[index[outside]] = 0
    return cells


def _boundaries(labels):
    """Cell edge pixels (a 4-neighbour has another label) and exposed ones (a neighbour is 0)."""
    edge = np.zeros(labels.shape, bool)
    zero_nb = np.zeros(labels.shape, bool)
    horizontal = labels[:, 1:] != labels[:, :-1]
    vertical = labels[1:, :] != labels[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    zero = labels == 0
    zero_nb[:, 1:] |= zero[:, :-1]
    zero_nb[:, :-1] |= zero[:, 1:]
    zero_nb[1:, :] |= zero[:-1, :]
    zero_nb[:-1, :] |= zero[1:, :]
    cell = ~zero
    return edge & cell, zero_nb & cell


def _compartments(cells, *, band_px):
    """Compartment codes and nucleus labels; tumour nuclei stay out of the membrane band.

    Returns
    -------
    compartments : ndarray of uint8, shape (M, N)
    nucleus_labels : ndarray of int32, shape (M, N)
    edge, exposed : ndarray of bool, shape (M, N)
        Cell edge pixels and those touching no cell (see :func:`_boundaries`).
    """
    labels = cells.labels
    edge, exposed = _boundaries(labels)
    dist = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    band = (labels > 0) & (dist < band_px)
    index = np.flatnonzero(labels)
    nucleus = _ellipse_value(index, labels.ravel(), cells, width=labels.shape[1]) <= 1
    nucleus &= ~(band.ravel()[index] & (cells.kind[labels.ravel()[index]] == _TUMOUR))
    compartments = np.where(band, MEMBRANE, np.where(labels > 0, CYTOPLASM, BACKGROUND)).astype(np.uint8)
    compartments.ravel()[index[nucleus]] = NUCLEUS
    nucleus_labels = np.where(compartments == NUCLEUS, labels, 0).astype(np.int32)
    return compartments, nucleus_labels, edge, exposed


def _drop_small_nuclei(cells, nucleus_labels, *, spec):
    """Remove cells whose rendered nucleus is below ``_MIN_NUCLEUS_UM2`` and relabel 1..n."""
    n = len(cells.kind)
    area_um2 = np.bincount(nucleus_labels.ravel(), minlength=n) * spec.mpp**2
    keep = area_um2 >= _MIN_NUCLEUS_UM2
    keep[0] = True
    new_label = np.where(keep, np.cumsum(keep) - 1, 0).astype(np.int32)
    return _Cells(labels=new_label[cells.labels], kind=cells.kind[keep], cy=cells.cy[keep],
                  cx=cells.cx[keep], a=cells.a[keep], b=cells.b[keep], theta=cells.theta[keep])


# --------------------------------------------------------------------------------------
# Staining
# --------------------------------------------------------------------------------------


def _class_levels(classes, *, spec, rng):
    """DAB levels drawn inside each class's interval, ``class_margin`` from the thresholds."""
    edges = np.array([*DEFAULT_THRESHOLDS, spec.max_dab + spec.class_margin])
    lo = edges[classes - 1] + spec.class_margin
    hi = edges[classes] - spec.class_margin
    return rng.uniform(lo, hi)


def _staining(cells, *, spec, rng):
    """Per-label DAB level per compartment and pattern code.

    Returns
    -------
    levels : ndarray of float64, shape (n_labels, 4)
        Mean DAB OD per compartment code (column 0 unused).
    pattern : ndarray of int, shape (n_labels,)
    """
    n = len(cells.kind)
    levels = np.zeros((n, 4))
    levels[:, 1:] = rng.uniform(0, spec.negative_dab_max, (n, 3))
    pattern = np.full(n, _NEGATIVE)
    class_p = np.asarray(spec.class_weights) / sum(spec.class_weights)
    pattern_p = np.asarray(spec.pattern_weights) / sum(spec.pattern_weights)

    tumour = np.flatnonzero(cells.kind == _TUMOUR)
    field = _smooth_field(cells.labels.shape, scale_px=spec.nest_scale_um / spec.mpp, rng=rng)
    rows = np.clip(np.rint(cells.cy[tumour]).astype(np.int64), 0, cells.labels.shape[0] - 1)
    cols = np.clip(np.rint(cells.cx[tumour]).astype(np.int64), 0, cells.labels.shape[1] - 1)
    c = spec.positive_clustering
    score = c * field[rows, cols] + math.sqrt(1 - c * c) * rng.standard_normal(len(tumour))
    if spec.nest_heterogeneity > 0:
        h = spec.nest_heterogeneity
        nest = _nest_ids(cells)[tumour]
        score = math.sqrt(1 - h * h) * score + h * rng.standard_normal(nest.max() + 1)[nest]
    positive = tumour[np.argsort(-score, kind="stable")[: round(spec.positive_fraction * len(tumour))]]
    klass = rng.choice(3, size=len(positive), p=class_p) + 1
    pattern[positive] = rng.choice(3, size=len(positive), p=pattern_p) + 1
    level = _class_levels(klass, spec=spec, rng=rng)
    is_membrane = pattern[positive] == _PAT_MEMBRANE
    is_cytoplasm = pattern[positive] == _PAT_CYTOPLASM
    is_mixed = pattern[positive] == _PAT_MIXED
    levels[positive[is_membrane | is_mixed], MEMBRANE] = level[is_membrane | is_mixed]
    levels[positive[is_cytoplasm], CYTOPLASM] = level[is_cytoplasm]
    levels[positive[is_cytoplasm], MEMBRANE] = level[is_cytoplasm]
    mixed_class = rng.integers(1, klass[is_mixed] + 1)
    levels[positive[is_mixed], CYTOPLASM] = _class_levels(mixed_class, spec=spec, rng=rng)

    immune = np.flatnonzero(cells.kind == _IMMUNE)
    lym_pos = rng.permutation(immune)[: round(spec.lymphocyte_positive_fraction * len(immune))]
    lym_level = _class_levels(rng.choice(3, size=len(lym_pos), p=class_p) + 1, spec=spec, rng=rng)
    levels[lym_pos, MEMBRANE] = lym_level
    levels[lym_pos, CYTOPLASM] = lym_level
    pattern[lym_pos] = _PAT_MEMBRANE
    return levels, pattern


def _nest_ids(cells):
    """Per label, the connected tumour region (nest) it belongs to; 0 for non-tumour labels."""
    tumour = (cells.kind[cells.labels] == _TUMOUR) & (cells.labels > 0)
    _, nests = cv2.connectedComponents(tumour.astype(np.uint8), connectivity=8)
    ids = np.zeros(len(cells.kind), np.int64)
    ids[cells.labels[tumour]] = nests[tumour]
    return ids


def _hematoxylin_levels(cells, *, spec, rng):
    """Per-label mean hematoxylin OD per compartment code, shape (n_labels, 4)."""
    n = len(cells.kind)
    levels = np.zeros((n, 4))
    kind = cells.kind
    levels[:, NUCLEUS] = np.select(
        [kind == _TUMOUR, kind == _IMMUNE],
        [rng.uniform(*spec.nucleus_hematoxylin, n), rng.uniform(0.8, 1.1, n)],
        rng.uniform(0.35, 0.6, n))
    cytoplasm = np.where(kind == _TUMOUR, rng.uniform(*spec.cytoplasm_hematoxylin, n),
                         rng.uniform(0.08, 0.14, n))
    levels[:, CYTOPLASM] = cytoplasm
    levels[:, MEMBRANE] = cytoplasm
    return levels


def _fill_levels(labels_flat, compartments_flat, index, texture, levels):
    """Texture on ``index`` pixels rescaled so each (cell, compartment) mean equals ``levels``."""
    key = labels_flat[index].astype(np.int64) * 4 + compartments_flat[index]
    size = levels.size
    mean = np.bincount(key, texture, minlength=size) / np.maximum(np.bincount(key, minlength=size), 1)
    factor = np.divide(levels.ravel(), mean, out=np.zeros(size), where=mean > 0)
    return (texture * factor[key]).astype(np.float32)


def _stroma_background(shape, *, spec, rng, fibre_angle):
    """Faint fibrous hematoxylin OD of the stroma (collagen along ``fibre_angle``)."""
    pad = int(0.2 * max(shape)) + 1
    big = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    noise = rng.standard_normal(big, dtype=np.float32)
    fibres = cv2.GaussianBlur(noise, (0, 0), sigmaX=6.0 / spec.mpp, sigmaY=0.6 / spec.mpp)
    centre = (big[1] / 2, big[0] / 2)
    turn = cv2.getRotationMatrix2D(centre, -math.degrees(fibre_angle), 1.0)
    fibres = cv2.warpAffine(fibres, turn, (big[1], big[0]), borderMode=cv2.BORDER_REFLECT)
    fibres = fibres[pad:pad + shape[0], pad:pad + shape[1]]
    fibres = (fibres - fibres.mean()) / max(float(fibres.std()), 1e-12)
    lo, hi = spec.stroma_hematoxylin
    field = 0.5 * fibres + 0.5 * _smooth_field(shape, scale_px=50.0 / spec.mpp, rng=rng)
    return np.clip((lo + hi) / 2 + (hi - lo) / 2 * field, 0.5 * lo, 1.5 * hi).astype(np.float32)


def _concentrations(cells, compartments, tissue, *, spec, rng, fibre_angle):
    """Hematoxylin and DAB maps (float32 OD), and the drawn staining pattern per label."""
    shape = cells.labels.shape
    dab_levels, pattern = _staining(cells, spec=spec, rng=rng)
    h_levels = _hematoxylin_levels(cells, spec=spec, rng=rng)
    labels_flat, comp_flat = cells.labels.ravel(), compartments.ravel()
    index = np.flatnonzero(labels_flat)
    chromatin = np.maximum(1 + 0.3 * _texture(shape, sigma_px=0.35 / spec.mpp, rng=rng), 0.2).ravel()[index]
    granules = np.maximum(1 + 0.35 * _texture(shape, sigma_px=0.4 / spec.mpp, rng=rng), 0.1).ravel()[index]
    hematoxylin = np.where(tissue, _stroma_background(shape, spec=spec, rng=rng, fibre_angle=fibre_angle), 0)
    hematoxylin = hematoxylin.astype(np.float32)
    hematoxylin.ravel()[index] = _fill_levels(labels_flat, comp_flat, index, chromatin, h_levels)
    dab = np.zeros(shape, np.float32)
    dab.ravel()[index] = _fill_levels(labels_flat, comp_flat, index, granules, dab_levels)
    return hematoxylin, dab, pattern


# --------------------------------------------------------------------------------------
# Artefacts: nonspecific brown in stroma, debris, folds (drawn only when enabled)
# --------------------------------------------------------------------------------------


def _fold_mask(tissue, *, spec, rng):
    """A wavy band of tissue covering about ``fold_fraction`` of the field."""
    shape = tissue.shape
    if spec.fold_fraction == 0:
        return np.zeros(shape, bool)
    angle = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0.3, 0.7, 2) * np.array(shape)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    across = (rows - cy) * math.cos(angle) - (cols - cx) * math.sin(angle)
    wobble = _smooth_field(shape, scale_px=40.0 / spec.mpp, rng=rng) * (4.0 / spec.mpp)
    half_width = 0.5 * spec.fold_fraction * math.sqrt(shape[0] * shape[1])
    return (np.abs(across + wobble) < half_width) & tissue


def _debris_mask(labels, tissue, *, spec, rng):
    """Debris blob labels (int32, 0 = none) in cell-free tissue, never touching a cell."""
    free = tissue & (labels == 0)
    blobs = np.zeros(labels.shape, np.int32)
    n = round(spec.debris_density_mm2 * free.sum() * spec.mpp**2 * 1e-6)
    clearance = cv2.distanceTransform(free.astype(np.uint8), cv2.DIST_L2, 5)
    room = np.flatnonzero(clearance >= 2.0 / spec.mpp)
    if n == 0 or room.size == 0:
        return blobs
    centres = rng.choice(room, size=min(n, room.size), replace=False)
    radii = rng.uniform(1.0, 3.5, (len(centres), 2)) / spec.mpp
    angles = rng.uniform(0, 180, len(centres))
    for k, (centre, (ra, rb), angle) in enumerate(zip(centres, radii, angles), start=1):
        row, col = divmod(int(centre), labels.shape[1])
        cv2.ellipse(blobs, (col, row), (max(1, round(ra)), max(1, round(rb))), float(angle), 0, 360, k, -1)
    blobs[~free] = 0
    return blobs


def _overlays(hematoxylin, dab, labels, tissue, *, spec, rng):
    """Add stroma brown, debris and a fold to the concentration maps (copies).

    Returns
    -------
    hematoxylin, dab : ndarray of float32
    fold : ndarray of bool
    debris : ndarray of bool
    """
    hematoxylin, dab = hematoxylin.copy(), dab.copy()
    shape = labels.shape
    free = tissue & (labels == 0)
    if spec.stroma_dab > 0:
        field = 1 + 0.5 * np.clip(_smooth_field(shape, scale_px=30.0 / spec.mpp, rng=rng), -2, 2)
        dab[free] += (spec.stroma_dab * field[free]).astype(np.float32)
    debris = np.zeros(shape, bool)
    if spec.debris_density_mm2 > 0:
        blobs = _debris_mask(labels, tissue, spec=spec, rng=rng)
        debris = blobs > 0
        grain = np.maximum(1 + 0.3 * _texture(shape, sigma_px=0.4 / spec.mpp, rng=rng), 0.2)
        n_blobs = int(blobs.max())
        blob_dab = np.concatenate([[0.0], rng.uniform(0.3, 0.9, n_blobs)]).astype(np.float32)
        blob_h = np.concatenate([[0.0], rng.uniform(0.05, 0.3, n_blobs)]).astype(np.float32)
        dab[debris] += blob_dab[blobs[debris]] * grain[debris]
        hematoxylin[debris] += blob_h[blobs[debris]] * grain[debris]
    fold = _fold_mask(tissue, spec=spec, rng=rng)
    if fold.any():
        layer = np.clip(1 + 0.3 * _smooth_field(shape, scale_px=8.0 / spec.mpp, rng=rng), 0.3, 2.0)
        hematoxylin[fold] += (rng.uniform(0.12, 0.25) * layer[fold]).astype(np.float32)
        dab[fold] += (rng.uniform(0.5, 1.0) * spec.fold_dab * layer[fold]).astype(np.float32)
    return hematoxylin, dab, fold, debris


# --------------------------------------------------------------------------------------
# Truth
# --------------------------------------------------------------------------------------


def truth_class(value, *, thresholds=DEFAULT_THRESHOLDS):
    """Class 0-3 of mean DAB values: the number of thresholds at or below each value.

    Parameters
    ----------
    value : array_like
        Mean DAB OD; NaN (empty compartment) gives class 0.
    thresholds : sequence of 3 float, optional
        Increasing 1+/2+/3+ thresholds.

    Returns
    -------
    ndarray of int64

    Examples
    --------
    >>> truth_class([0.1, 0.2, 0.45, 0.9, float("nan")]).tolist()
    [0, 1, 2, 3, 0]
    """
    value = np.asarray(value, np.float64)
    klass = np.searchsorted(np.asarray(thresholds, np.float64), np.nan_to_num(value, nan=-np.inf),
                            side="right")
    return klass.astype(np.int64)


def _truth_table(cells, nucleus_labels, compartments, hematoxylin, dab, pattern, edge, exposed, *, mpp):
    """Per-cell truth measured on the rendered concentration maps (before blur and noise)."""
    n = len(cells.kind)
    labels_flat = cells.labels.ravel()
    index = np.flatnonzero(labels_flat)
    lab = labels_flat[index]
    key = lab.astype(np.int64) * 4 + compartments.ravel()[index]
    count = np.bincount(key, minlength=4 * n).reshape(n, 4)
    with np.errstate(invalid="ignore", divide="ignore"):
        dab_mean = np.bincount(key, dab.ravel()[index], minlength=4 * n).reshape(n, 4) / count
        h_mean = np.bincount(key, hematoxylin.ravel()[index], minlength=4 * n).reshape(n, 4) / count
        nuc_index = np.flatnonzero(nucleus_labels)
        nuc_lab = nucleus_labels.ravel()[nuc_index]
        rows, cols = np.divmod(nuc_index, cells.labels.shape[1])
        y = np.bincount(nuc_lab, rows, minlength=n) / count[:, NUCLEUS]
        x = np.bincount(nuc_lab, cols, minlength=n) / count[:, NUCLEUS]
        n_edge = np.bincount(lab, edge.ravel()[index], minlength=n)
        exposed_fraction = np.bincount(lab, (edge & exposed).ravel()[index], minlength=n) / n_edge
    class_membrane = truth_class(dab_mean[:, MEMBRANE])
    class_cytoplasm = truth_class(dab_mean[:, CYTOPLASM])
    table = pd.DataFrame({
        "cell_id": np.arange(n, dtype=np.int64),
        "x": x, "y": y, "x_um": x * mpp, "y_um": y * mpp,
        "cell_type": _CELL_TYPES[cells.kind],
        "nucleus_area_um2": count[:, NUCLEUS] * mpp**2,
        "cell_area_um2": count[:, 1:].sum(axis=1) * mpp**2,
        "dab_nucleus": dab_mean[:, NUCLEUS], "dab_cytoplasm": dab_mean[:, CYTOPLASM],
        "dab_membrane": dab_mean[:, MEMBRANE], "hematoxylin_nucleus": h_mean[:, NUCLEUS],
        "pattern": _PATTERNS[pattern],
        "class_membrane": class_membrane, "class_cytoplasm": class_cytoplasm,
        "class": np.maximum(class_membrane, class_cytoplasm),
        "membrane_exposed_fraction": exposed_fraction,
    })
    return table.loc[1:, list(TRUTH_COLUMNS)].reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------


def generate_tile(spec=TileSpec(), *, seed):
    """Render one synthetic CXCR4 IHC tile with per-cell ground truth.

    Parameters
    ----------
    spec : TileSpec, optional
        Content and rendering parameters.
    seed : int
        Seed of :func:`numpy.random.default_rng`; equal seeds give identical tiles.

    Returns
    -------
    SyntheticTile

    Raises
    ------
    TypeError
        If ``spec`` is not a :class:`TileSpec`.

    Notes
    -----
    Truth DAB and hematoxylin means are measured on the cells' own concentration maps over the
    truth compartments, before blur, noise and JPEG, and before stroma brown, debris and a fold
    are added (a fold darkens the cells under it; their truth is what they would show without it). Cells whose nucleus would render smaller than
    8 um^2 (squeezed at a nest margin) are removed before staining. The stain directions are
    ``stain_angle_deg`` away from QuPath's and I0 is below 255, so an analysis using QuPath's
    defaults meets a realistic mismatch.

    Examples
    --------
    >>> tile = generate_tile(TileSpec(size_um=(128.0, 128.0)), seed=1)
    >>> tile.rgb.shape, tile.rgb.dtype.name
    ((256, 256, 3), 'uint8')
    """
    if not isinstance(spec, TileSpec):
        raise TypeError(f"spec must be a TileSpec, got {type(spec).__name__}")
    rng = np.random.default_rng(seed)
    i0, stain_vectors, blur_um = _render_parameters(spec, rng)
    fibre_angle = float(rng.uniform(0, np.pi))
    tissue = _tissue_mask(spec.shape, spec=spec, rng=rng)
    cells = _cells(tissue, spec=spec, rng=rng, fibre_angle=fibre_angle)
    band_px = spec.membrane_band_um / spec.mpp
    _, nucleus_labels, _, _ = _compartments(cells, band_px=band_px)
    cells = _drop_small_nuclei(cells, nucleus_labels, spec=spec)
    compartments, nucleus_labels, edge, exposed = _compartments(cells, band_px=band_px)
    hematoxylin, dab, pattern = _concentrations(cells, compartments, tissue, spec=spec, rng=rng,
                                                fibre_angle=fibre_angle)
    truth = _truth_table(cells, nucleus_labels, compartments, hematoxylin, dab, pattern, edge, exposed,
                         mpp=spec.mpp)
    hematoxylin, dab, fold, debris = _overlays(hematoxylin, dab, cells.labels, tissue, spec=spec, rng=rng)
    if spec.fold_fraction > 0:
        rows = np.clip(np.rint(truth["y"].to_numpy()).astype(np.int64), 0, fold.shape[0] - 1)
        cols = np.clip(np.rint(truth["x"].to_numpy()).astype(np.int64), 0, fold.shape[1] - 1)
        truth["in_fold"] = fold[rows, cols]
    rgb = render_rgb(hematoxylin, dab, i0=i0, stain_vectors=stain_vectors,
                     blur_sigma_px=blur_um / spec.mpp, noise_sigma=spec.noise_sigma, rng=rng)
    return SyntheticTile(rgb=rgb, mpp=spec.mpp, truth=truth, nucleus_labels=nucleus_labels,
                         cell_labels=cells.labels, compartments=compartments, hematoxylin=hematoxylin,
                         dab=dab, tissue_mask=tissue, i0=i0, stain_vectors=stain_vectors,
                         blur_sigma_um=blur_um, fold_mask=fold, debris_mask=debris)


def _truth_path(path):
    """``<stem>.truth.csv`` next to the image ``path``."""
    return path.with_name(path.name.rsplit(".", 1)[0] + ".truth.csv")


def write_tile(tile, path, *, jpeg_quality=None):
    """Write a tile as a tiled RGB TIFF with its pixel size, and its truth table as CSV.

    Parameters
    ----------
    tile : SyntheticTile
        The tile to write.
    path : str or Path
        Image path (``.tif``); the truth goes to ``<stem>.truth.csv`` beside it.
    jpeg_quality : int, optional
        JPEG quality 1-100 (stored as YCbCr with 4:2:0 chroma subsampling, as most slide
        scanners do); ``None`` writes lossless deflate.

    Returns
    -------
    Path
        The image path.

    Raises
    ------
    ValueError
        If ``jpeg_quality`` is outside 1-100.

    Notes
    -----
    Pixel size is stored as ``XResolution``/``YResolution`` of ``1e4 / mpp`` pixels per
    centimetre (``ResolutionUnit`` CENTIMETER), which OpenSlide, QuPath and tifffile read.
    """
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1-100 or None, got {jpeg_quality!r}")
    path = Path(path)
    compression = ("jpeg", {"level": int(jpeg_quality)}) if jpeg_quality else ("zlib", None)
    tifffile.imwrite(path, tile.rgb, photometric="rgb", tile=(256, 256), compression=compression[0],
                     compressionargs=compression[1], resolution=(1e4 / tile.mpp, 1e4 / tile.mpp),
                     resolutionunit="CENTIMETER", metadata=None)
    tile.truth.to_csv(_truth_path(path), index=False, float_format="%.6g")
    return path


# --------------------------------------------------------------------------------------
# Demo cohort
# --------------------------------------------------------------------------------------

# The not_eligible patients' lymphocytes stain, as CXCR4's do, so their calls do not read as a
# failed stain (the internal control).
# A 0 % slide needs more than about 1,900 tumour cells for its interval (Wilson on n / 5) to
# lie below the 1 % cutoff, on its own as well (slides that disagree make a patient indeterminate).
_BIG = (1024.0, 1024.0)


@dataclass(frozen=True)
class _DemoSlide:
    """One slide of the demo cohort and the call its patient is designed to get."""

    patient_id: str
    stem: str
    call: str
    spec: TileSpec
    seed: int
    specimen: str
    collected: str = ""
    roi: bool = False


_DEMO_COHORT = (
    _DemoSlide("P01", "P01_A", "eligible", TileSpec(positive_fraction=0.4, lymphocyte_positive_fraction=0.3),
               seed=101, specimen="primary core biopsy", collected="2023-03-14"),
    _DemoSlide("P01", "P01_B", "eligible", TileSpec(positive_fraction=0.4, lymphocyte_positive_fraction=0.3),
               seed=102, specimen="primary excision", collected="2023-04-20"),
    _DemoSlide("P02", "P02_A", "not_eligible",
               TileSpec(size_um=_BIG, glass_fraction=0.1, nest_fraction=0.75, positive_fraction=0.0,
                        lymphocyte_positive_fraction=0.3),
               seed=201, specimen="primary core biopsy"),
    _DemoSlide("P03", "P03_A", "inadequate",
               TileSpec(glass_fraction=0.955, tissue_layout="fragment", nest_fraction=0.8,
                        positive_fraction=0.3),
               seed=301, specimen="primary core biopsy"),
    _DemoSlide("P04", "P04_A", "indeterminate",
               TileSpec(positive_fraction=0.01, class_weights=(0.0, 0.5, 0.5)),
               seed=401, specimen="primary core biopsy"),
    _DemoSlide("P05", "P05_A", "eligible", TileSpec(positive_fraction=0.3, nest_scale_um=70.0),
               seed=501, specimen="primary excision", roi=True),
    _DemoSlide("P06", "P06_A", "not_eligible",
               TileSpec(size_um=_BIG, glass_fraction=0.1, nest_fraction=0.75, positive_fraction=0.0,
                        lymphocyte_positive_fraction=0.3),
               seed=601, specimen="primary core biopsy", collected="2022-11-08"),
    _DemoSlide("P06", "P06_B", "not_eligible",
               TileSpec(size_um=(768.0, 768.0), mpp=0.25, glass_fraction=0.05, nest_fraction=0.85,
                        cell_diameter_um=(11.0, 15.0), positive_fraction=0.0, lymphocyte_positive_fraction=0.3),
               seed=602, specimen="axillary lymph node metastasis", collected="2024-01-22"),
)

_DEMO_JPEG_QUALITY = 90


def _main_tumour_outline(tile, *, close_um=15.0, margin_um=10.0):
    """Polygon (K, 2) of (x, y) level-0 pixels around the largest tumour-nest region."""
    tumour_ids = tile.truth.loc[tile.truth["cell_type"] == "tumour", "cell_id"].to_numpy()
    tumour = np.isin(tile.cell_labels, tumour_ids).astype(np.uint8)

    def disc(um):
        size = 2 * round(um / tile.mpp) + 1
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))

    closed = cv2.morphologyEx(tumour, cv2.MORPH_CLOSE, disc(close_um))
    _, comp, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = cv2.dilate((comp == largest).astype(np.uint8), disc(margin_um)) & tile.tissue_mask
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = cv2.approxPolyDP(max(contours, key=cv2.contourArea), 1.0, True)
    return outline[:, 0, :].astype(np.float64)


def _write_roi(polygon, path, *, name):
    """Write one QuPath-style annotation (Polygon in level-0 pixels) as a GeoJSON FeatureCollection."""
    ring = [[float(x), float(y)] for x, y in polygon]
    ring.append(ring[0])
    feature = {
        "type": "Feature",
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"cxcr4score-demo/{name}")),
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}},
    }
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}, indent=1) + "\n")


def _write_demo_slide(slide, out_dir):
    """Generate and write one demo slide; returns its sheet row."""
    folder = out_dir / slide.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    tile = generate_tile(slide.spec, seed=slide.seed)
    image = write_tile(tile, folder / f"{slide.stem}.tif", jpeg_quality=_DEMO_JPEG_QUALITY)
    roi = ""
    if slide.roi:
        roi_path = folder / f"{slide.stem}.roi.geojson"
        _write_roi(_main_tumour_outline(tile), roi_path, name=slide.stem)
        roi = roi_path.relative_to(out_dir).as_posix()
    return {"patient_id": slide.patient_id, "slide_id": f"{slide.patient_id}__{slide.stem}",
            "path": image.relative_to(out_dir).as_posix(), "mpp": "", "roi": roi,
            "specimen": slide.specimen, "collected": slide.collected}


def write_demo_cohort(out_dir):
    """Write the demo cohort: images with truth, ROI, ``slides.tsv`` and ``expected.csv``.

    Parameters
    ----------
    out_dir : str or Path
        Destination folder (created); one sub-folder per patient.

    Returns
    -------
    pandas.DataFrame
        Expected calls, columns ``patient_id, call`` (also written to ``expected.csv``).

    Notes
    -----
    Expected calls follow from the design (truth), not from running the analysis. The sheet's
    ``slide_id`` is ``{patient_id}__{stem}``, the id the folder input derives, so the sheet
    and the folder give the same results. The ``mpp`` column is empty: the pixel size comes
    from the TIFF tags. Slides of 0 % patients have larger fields (0.6-1 mm^2): with the
    design effect of 5 the Wilson interval of 0 positives lies below 1 % only beyond about
    1,900 tumour cells, and each slide must be below on its own or the slides disagree.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [_write_demo_slide(slide, out_dir) for slide in _DEMO_COHORT]
    pd.DataFrame(rows).to_csv(out_dir / "slides.tsv", sep="\t", index=False)
    expected = (pd.DataFrame([(s.patient_id, s.call) for s in _DEMO_COHORT], columns=["patient_id", "call"])
                .drop_duplicates().reset_index(drop=True))
    expected.to_csv(out_dir / "expected.csv", index=False)
    return expected
