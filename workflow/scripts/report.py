"""The HTML report."""

import pandas as pd
from _common import start

log = start(snakemake)  # noqa: F821

from cxcr4score.report import render_report  # noqa: E402
from cxcr4score.tables import write_text  # noqa: E402

text = render_report(
    pd.read_csv(snakemake.input.eligibility, dtype={"patient_id": str}),  # noqa: F821
    pd.read_csv(snakemake.input.slides, dtype={"patient_id": str, "slide_id": str}),  # noqa: F821
    snakemake.input.qc,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    assay=snakemake.params.assay,  # noqa: F821
    version=snakemake.params.version,  # noqa: F821
    calibration=snakemake.params.calibration,  # noqa: F821
)
write_text(text, snakemake.output[0])  # noqa: F821
