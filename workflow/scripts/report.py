"""The HTML report: one self-contained page with the cohort, every patient and slide, and the config."""

from pathlib import Path

import pandas as pd
from _common import start

log = start(snakemake)  # noqa: F821

from cxcr4score.report import render_report, scored_cell_dab  # noqa: E402
from cxcr4score.tables import write_text  # noqa: E402

config = snakemake.params.config  # noqa: F821
slides = pd.read_csv(snakemake.input.slides, dtype={"patient_id": str, "slide_id": str})  # noqa: F821
slide_ids = snakemake.params.slide_ids  # noqa: F821 (in the order of the qc and cells inputs)
qc_paths = dict(zip(slide_ids, snakemake.input.qc))  # noqa: F821
cells_paths = dict(zip(slide_ids, snakemake.input.cells))  # noqa: F821
text = render_report(
    pd.read_csv(snakemake.input.eligibility, dtype={"patient_id": str}),  # noqa: F821
    slides,
    load_qc_picture=lambda slide_id: Path(qc_paths[slide_id]).read_bytes(),
    load_cell_dab=lambda slide_id: scored_cell_dab(cells_paths[slide_id], config["compartments"]),
    config=config,
    version=snakemake.params.version,  # noqa: F821
    calibration=snakemake.params.calibration,  # noqa: F821
)
write_text(text, snakemake.output[0])  # noqa: F821
