"""Constants that several stages must agree on (DESIGN sections 3, 5 and 6).

The compartment codes that segmentation writes and the kernels and the generator read; the
membrane sectors; the fixed-point scale of optical density in the integer accumulators; and
the grid of the joint pixel histogram that measurement fills and scoring reads. A constant
that one module alone uses lives in that module.
"""

import numpy as np

#: Fixed-point scale of optical density in the accumulators: q = rint(OD * Q_SCALE) (DESIGN 6).
Q_SCALE = float(2**20)

#: Compartment codes of a pixel (DESIGN section 3).
BACKGROUND, NUCLEUS, CYTOPLASM, MEMBRANE = 0, 1, 2, 3
#: Cytoplasm pixels within the membrane capture width of the band (see
#: ``segment.compartments``): where the membrane is looked for beside the band.
MEMBRANE_RING = 4
#: Band and ring pixels on a DAB ridge (``segment.dab_ridges``): the located membrane.
MEMBRANE_RIDGE, RING_RIDGE = 5, 6
#: Compartment codes 0 (background) to 6: the statistics kernel's accumulators per label.
N_CODES = RING_RIDGE + 1
#: Compartment names of codes 1, 2, 3, in code order.
COMPARTMENT_NAMES = ("nucleus", "cytoplasm", "membrane")

#: Angular sectors of the membrane band about the nucleus centroid (DESIGN section 5,
#: HER2-style circumferential reading).
N_SECTORS = 16
#: Column names of the membrane-band sector means.
SECTOR_COLUMNS = tuple(f"dab_membrane_sector_{s:02d}" for s in range(N_SECTORS))

#: A cell's stained line, located in at least this many of its 16 sectors (3/8 of its
#: circumference, more than two neighbours share with it in a hexagonal packing, 1/6 each), is
#: its membrane: the cell reads the line's mean, and ``membrane_completeness`` says how much of
#: the cell it covers, as a pathologist grades a membrane's intensity where it is stained and
#: its completeness apart. A shorter line (a granule, the edge of a neighbour's brown nucleus,
#: one stained neighbour's membrane) does not, and the band's level fills the sectors without a
#: line. On the HER2 2+ core ``a5593c5e``, whose cells in brown nests carry strong lines on
#: most of their outline, 13.4% of cells read membrane-positive when every sector counted and
#: 29.8% with this; the generated held-out cohort's membrane H-score error halves (validation.md).
#: Such a cell is scored on its membrane however exposed its band (``score.scored_values``).
MIN_LINE_SECTORS = 6

#: Joint histogram of tumour-region pixels: DAB in 800 bins of 0.005 OD and hematoxylin in
#: 200 bins of 0.02 OD, both from -1 to 3 (clamped into the end bins), so that pixel-score
#: thresholds on either stain are applied after the pixel pass.
HIST_LOW = -1.0
HIST_BINS_PER_OD, HIST_BINS = 200.0, 800
HEM_BINS_PER_OD, HEM_BINS = 50.0, 200
#: Edges of the DAB bins: bin ``i`` covers ``[-1 + i / 200, -1 + (i + 1) / 200)``.
DAB_HIST_EDGES = np.linspace(HIST_LOW, HIST_LOW + HIST_BINS / HIST_BINS_PER_OD, HIST_BINS + 1)
