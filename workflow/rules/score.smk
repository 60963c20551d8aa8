# Per-patient scores and eligibility calls from the slides' additive class counts.


rule eligibility:
    input:
        unpack(get_slide_summaries),
        patients=get_patients_sheet,
    output:
        eligibility=report(out("eligibility.csv"), caption="../report/eligibility.rst", category="Eligibility"),
        slides=report(out("slides.csv"), caption="../report/slides.rst", category="Slides"),
        config=out("config.effective.yaml"),
    params:
        call_config=config_subset(CALL_KEYS),
        collected=SLIDES["collected"].to_dict(),
        listed_criteria=listed_criteria_param(),
        # written to config.effective.yaml: any key changed rewrites it
        effective_config=json.dumps(config),
        version=cxcr4score.__version__,
    conda:
        "../envs/cxcr4score.yaml"
    log:
        out("logs/eligibility.log"),
    benchmark:
        out("benchmarks/eligibility.tsv")
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/eligibility.py"
