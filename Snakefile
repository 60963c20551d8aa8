# cxcr4score: CXCR4 IHC scoring and per-patient trial eligibility.
# Research use only: the output supports, and does not replace, a pathologist's assessment
# of a validated CXCR4 assay.
#
#   snakemake --cores 8                                  # config/config.yaml -> config/slides.tsv
#   snakemake --cores 8 --config slides=/data/cohort/    # a folder: sub-folders are patients

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/slides.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
