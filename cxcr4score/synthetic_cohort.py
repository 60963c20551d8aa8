"""Named generator configurations and the synthetic patients drawn from them.

Every configuration renders away from the analysis defaults (DESIGN.md section 5): stain
directions rotated 0-10 degrees in a random direction, I0 drawn per channel in 215-250, JPEG
quality 70-95, and each adds one difficulty (a staining pattern, heterogeneous nests,
lymphocyte infiltrates, folds and debris). ``held_out`` combines them with its own parameters
and its own seed range; it is never used to tune the analysis, and ``cxcr4score bench
accuracy`` judges the accuracy targets on it alone.

A patient has one or more tiles (slides) with one tumour positive fraction; the fractions cycle
through :data:`PATIENT_POSITIVE_FRACTIONS` so a cohort holds clearly positive, clearly
negative and near-cutoff patients, and a patient with 0 % tumour positivity has positive
lymphocytes whenever the configuration stains lymphocytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .synthetic import TileSpec

__all__ = ["CONFIGURATIONS", "HELD_OUT", "PATIENT_POSITIVE_FRACTIONS", "GeneratorConfig", "SyntheticSlide",
           "cohort"]

#: Tumour positive fraction of patient k is entry ``k % 6``: the first is clearly positive so a
#: one-patient cohort is informative; 0.004 and 0.03 lie near the 1 % cutoff.
PATIENT_POSITIVE_FRACTIONS = (0.35, 0.0, 0.12, 0.004, 0.7, 0.03)

#: Render departures shared by every configuration (issue 4, item 1).
_RENDER = {"stain_angle_deg": 10.0, "stain_angle_min_deg": 0.0, "i0_independent": True,
           "i0_range": (215.0, 250.0)}

#: Name of the configuration kept out of all tuning.
HELD_OUT = "held_out"


@dataclass(frozen=True)
class GeneratorConfig:
    """One generator configuration.

    Parameters
    ----------
    description : str
        One line saying what the configuration exercises.
    spec : dict
        :class:`~cxcr4score.synthetic.TileSpec` fields (beyond size, pixel size and positive
        fraction).
    mpp : tuple of float
        Pixel sizes; each tile draws one.
    jpeg_quality : tuple of int
        Inclusive range of the JPEG quality drawn per tile.
    seed_base : int
        First seed; tile seeds are ``seed_base + 100 * patient + tile``.
    positive_fractions : tuple of float
        Tumour positive fractions cycled over patients.
    """

    description: str
    spec: dict = field(default_factory=dict)
    mpp: tuple[float, ...] = (0.5,)
    jpeg_quality: tuple[int, int] = (70, 95)
    seed_base: int = 0
    positive_fractions: tuple[float, ...] = PATIENT_POSITIVE_FRACTIONS


#: The named configurations; ``held_out`` is last.
CONFIGURATIONS = {
    "membrane": GeneratorConfig(
        "membrane-only pattern", {"pattern_weights": (1.0, 0.0, 0.0), "lymphocyte_positive_fraction": 0.3},
        seed_base=1_000_000),
    "cytoplasm": GeneratorConfig(
        "cytoplasm-only pattern", {"pattern_weights": (0.0, 1.0, 0.0), "lymphocyte_positive_fraction": 0.3},
        seed_base=2_000_000),
    "mixed_nests": GeneratorConfig(
        "mixed pattern, positivity varying by nest, 0.25 um/px",
        {"pattern_weights": (0.0, 0.0, 1.0), "nest_heterogeneity": 0.8, "lymphocyte_positive_fraction": 0.3},
        mpp=(0.25,), seed_base=3_000_000),
    "infiltrated": GeneratorConfig(
        "CXCR4-positive lymphocyte infiltrates in stroma and nests",
        {"intratumoral_lymphocyte_fraction": 0.1, "lymphocyte_density_mm2": 3000.0,
         "lymphocyte_positive_fraction": 0.6}, seed_base=4_000_000),
    "artefacts": GeneratorConfig(
        "fold, necrotic debris and faint brown stroma",
        {"fold_fraction": 0.12, "debris_density_mm2": 300.0, "stroma_dab": 0.05,
         "lymphocyte_positive_fraction": 0.3}, seed_base=5_000_000),
    "lymphocyte_only": GeneratorConfig(
        "tumour negative; the only positive cells are lymphocytes",
        {"intratumoral_lymphocyte_fraction": 0.08, "lymphocyte_density_mm2": 3000.0,
         "lymphocyte_positive_fraction": 0.7}, seed_base=6_000_000, positive_fractions=(0.0,)),
    "sparse_tumour": GeneratorConfig(
        "tumour nests sparse in stroma (12% of the tissue) with a dense, half CXCR4-positive infiltrate",
        {"nest_fraction": 0.12, "lymphocyte_density_mm2": 2500.0, "lymphocyte_positive_fraction": 0.5},
        seed_base=7_000_000),
    # Never used for tuning: its own combination of every difficulty, its own seeds.
    HELD_OUT: GeneratorConfig(
        "held out: all difficulties combined, own parameters and seeds, never tuned on",
        {"pattern_weights": (0.35, 0.3, 0.35), "nest_heterogeneity": 0.5, "intratumoral_lymphocyte_fraction": 0.05,
         "lymphocyte_density_mm2": 2000.0, "lymphocyte_positive_fraction": 0.4, "fold_fraction": 0.08,
         "debris_density_mm2": 150.0, "stroma_dab": 0.03, "blur_sigma_um": (0.3, 0.5), "noise_sigma": 3.0,
         "cell_diameter_um": (11.0, 17.0), "nucleus_area_um2": (25.0, 70.0), "stain_angle_min_deg": 2.0},
        mpp=(0.25, 0.5), seed_base=9_000_000),
}


@dataclass(frozen=True)
class SyntheticSlide:
    """One tile of a synthetic patient: what to render and how to write it."""

    patient_id: str
    slide_id: str
    spec: TileSpec
    seed: int
    jpeg_quality: int


def cohort(name, *, patients, tiles_per_patient=1, size_um=512.0):
    """The tiles of ``patients`` synthetic patients of configuration ``name``.

    Parameters
    ----------
    name : str
        A key of :data:`CONFIGURATIONS`.
    patients, tiles_per_patient : int
        Cohort size (``tiles_per_patient`` below 100: seeds are ``seed_base + 100 * patient + tile``).
    size_um : float
        Side of each (square) tile in um.

    Returns
    -------
    list of SyntheticSlide
        Patient ids are ``{name}_P{k:02d}``, slide ids ``{patient_id}_T{j}``.

    Raises
    ------
    ValueError
        For an unknown name or counts below 1.

    Examples
    --------
    >>> slides = cohort("membrane", patients=2, tiles_per_patient=1)
    >>> [s.slide_id for s in slides], slides[1].spec.positive_fraction
    (['membrane_P00_T0', 'membrane_P01_T0'], 0.0)
    """
    if name not in CONFIGURATIONS:
        raise ValueError(f"unknown generator configuration {name!r}; known: {', '.join(CONFIGURATIONS)}")
    if patients < 1 or not 1 <= tiles_per_patient < 100:
        raise ValueError("patients must be >= 1 and tiles_per_patient in 1-99, "
                         f"got {patients} and {tiles_per_patient}")
    config = CONFIGURATIONS[name]
    rng = np.random.default_rng(config.seed_base)
    slides = []
    for p in range(patients):
        fraction = config.positive_fractions[p % len(config.positive_fractions)]
        for t in range(tiles_per_patient):
            mpp = float(rng.choice(config.mpp))
            quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
            spec = TileSpec(size_um=(size_um, size_um), mpp=mpp, positive_fraction=fraction,
                            **_RENDER | config.spec)
            slides.append(SyntheticSlide(f"{name}_P{p:02d}", f"{name}_P{p:02d}_T{t}", spec,
                                         config.seed_base + 100 * p + t, quality))
    return slides
