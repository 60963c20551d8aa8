"""The QC picture of one slide."""

import pandas as pd
from _common import read_json, rule_config, start

log = start(snakemake)  # noqa: F821

from cxcr4score import pipeline, qc  # noqa: E402
from cxcr4score.slide_info import SlideInfo  # noqa: E402

info = SlideInfo.from_json(read_json(snakemake.input.info))  # noqa: F821
config = rule_config(snakemake.params.qc_config)  # noqa: F821
picture = pipeline.qc_slide(info, pd.read_parquet(snakemake.input.cells), config=config)  # noqa: F821
qc.write_png(picture, snakemake.output[0])  # noqa: F821
