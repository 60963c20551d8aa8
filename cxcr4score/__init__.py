"""cxcr4score: CXCR4 IHC scoring and per-patient trial eligibility (research use only).

The output supports, and does not replace, a pathologist's assessment of a validated
CXCR4 assay.

Code map, in pipeline order (DESIGN.md sections 2-3):

Inputs
    config          schema defaults, ``--config`` coercion, validation
    sheets          the slide list: a sample sheet or a folder of slides; the patients sheet
    errors          InputError: every bad input named in plain words
    images          one image file: format, layout checks, level 0 read whole
    slide_reader    regions of pyramid levels, decoding only the tiles touched
    jpeg_half       JPEG tiles decoded at half resolution (40x slides onto the 0.5 um grid)
    pixel_size      pixel size from metadata, else the sheet, else the default
    roi             QuPath GeoJSON annotations in (ROIs), cells out
Per slide (the workflow's rules call these through ``pipeline``)
    slide_info      SlideInfo: pixel size, grid, tissue, I0, stains, pixel QC, chunks
    grid            the analysis grid and the overview of a slide
    tiling          tiles with a halo (a cell belongs to the tile holding its centroid), chunks of tiles
    stains          stain vectors, I0, OD tables and colour deconvolution
    stain_estimation  per-slide stain directions (Macenko) with guards
    tissue          tissue mask
    segment         nuclei, cell expansion, compartments
    measure         per-cell DAB statistics per compartment in one pass (no thresholds)
    celltype        tumour / immune / stroma from nucleus morphology and neighbours; which cells are scored
    sampled_tiles   cells of a slide's sampled tissue tiles, measured as a chunk measures them
    stain_pattern   whether a slide's stain is nuclear (nuclei then found on DAB too)
    segmentation_stability  how scores move with the segmentation, from a sample of tiles
    score           classes, H-scores, % positive, Allred, IRS, block-bootstrap intervals
    qc_metrics      slide QC metrics and their levels
    pipeline        the per-slide stages: validate, measure a chunk, merge, QC picture
    stages          what a workflow job does per stage, bad input included, and its files
    reading_order   a slide's cells in reading order, merged part by part from sorted chunks
    job_batches     which small images the workflow scores several per job
Per patient and outputs
    eligibility     sensitivity variants, per-slide scores, the per-patient call and reasons
    listed_criteria HER2 status and ECOG against the listed protocol criteria (not eligibility)
    qc, report      QC pictures; the HTML report
    tables          atomic writing of tables, YAML, JSON and GeoJSON; tables part by part
Calibration
    calibration     thresholds fitted to a pathologist's scores, cross-validated
    calibration_record  the record a config references to be calibrated; its checks
    calibrate_command   ``cxcr4score calibrate``: reads results and scores, writes the record
Shared
    constants       compartment codes, sectors, OD fixed point, histogram grid
    _kernels        the Numba kernels, one module per stage
    runtime         threads, memory reuse, compiling kernels before parallel jobs
Tools
    synthetic, synthetic_cohort   generated tiles with per-cell truth (self-consistency only)
    bench           ``cxcr4score bench speed | accuracy | concordance | real | slide | merge``
    cli             the ``cxcr4score`` command
"""

__version__ = "0.10.1"

INTENDED_USE = (
    "Research use only: cxcr4score output supports, and does not replace, "
    "a pathologist's assessment of a validated CXCR4 assay."
)
