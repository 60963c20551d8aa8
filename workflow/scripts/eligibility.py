"""Per-slide scores (slides.csv) and per-patient calls (eligibility.csv), with the listed
protocol criteria when a patients sheet is given, plus the effective config."""

import json

import pandas as pd
from _common import fail, read_json, rule_config, start, warn

log = start(snakemake)  # noqa: F821

import cxcr4score  # noqa: E402
from cxcr4score import eligibility, listed_criteria, pipeline  # noqa: E402
from cxcr4score.errors import InputError  # noqa: E402
from cxcr4score.sheets import read_patients  # noqa: E402
from cxcr4score.tables import write_table, write_yaml  # noqa: E402

config = rule_config(snakemake.params.call_config)  # noqa: F821
slides = pd.DataFrame([read_json(p) for p in snakemake.input.summaries])  # noqa: F821
slides["collected"] = slides["slide_id"].map(snakemake.params.collected).fillna("")  # noqa: F821
blocks = pd.concat([pd.read_parquet(p) for p in snakemake.input.blocks], ignore_index=True)  # noqa: F821
calls = eligibility.patient_eligibility(slides, blocks, config, version=cxcr4score.__version__)
for _, row in calls.iterrows():
    log.info("%s: %s (%s)", row["patient_id"], row["call"], row["reason"])
for sheet in snakemake.input.patients:  # noqa: F821 (at most one: config patients)
    try:
        patients = read_patients(sheet)
    except InputError as err:
        fail(f"cannot use patients {sheet!r}:\n{err}")
    criteria = rule_config(snakemake.params.listed_criteria)["listed_criteria"]  # noqa: F821
    calls = listed_criteria.append_listed_criteria(calls, patients, criteria)
    unlisted = listed_criteria.patients_not_in_cohort(patients, calls["patient_id"])
    if unlisted:
        warn(f"warning: {sheet}: {len(unlisted)} patient(s) without slides left out: {', '.join(unlisted)}")
write_table(pipeline.slides_table(slides, blocks, config), snakemake.output.slides)  # noqa: F821
write_table(calls, snakemake.output.eligibility)  # noqa: F821
write_yaml(json.loads(snakemake.params.effective_config), snakemake.output.config)  # noqa: F821
