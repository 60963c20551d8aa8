"""Per-slide scores (slides.csv) and per-patient calls (eligibility.csv), plus the effective config."""

import pandas as pd
from _common import read_json, start

log = start(snakemake)  # noqa: F821

import cxcr4score  # noqa: E402
from cxcr4score import eligibility, pipeline  # noqa: E402
from cxcr4score.tables import write_table, write_yaml  # noqa: E402

config = snakemake.config  # noqa: F821 (the effective config, coerced in common.smk)
slides = pd.DataFrame([read_json(p) for p in snakemake.input.summaries])  # noqa: F821
slides["collected"] = slides["slide_id"].map(snakemake.params.collected).fillna("")  # noqa: F821
blocks = pd.concat([pd.read_parquet(p) for p in snakemake.input.blocks], ignore_index=True)  # noqa: F821
calls = eligibility.patient_eligibility(slides, blocks, config, version=cxcr4score.__version__)
for _, row in calls.iterrows():
    log.info("%s: %s (%s)", row["patient_id"], row["call"], row["reason"])
write_table(pipeline.slides_table(slides, blocks, config), snakemake.output.slides)  # noqa: F821
write_table(calls, snakemake.output.eligibility)  # noqa: F821
write_yaml(dict(snakemake.config), snakemake.output.config)  # noqa: F821
