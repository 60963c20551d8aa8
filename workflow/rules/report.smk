# The HTML report a pathologist opens: one self-contained page with the cohort's calls against the
# cutoff, every patient's slides (QC picture, DAB distribution, classes, QC metrics) and the config.


rule report:
    input:
        eligibility=out("eligibility.csv"),
        slides=out("slides.csv"),
        qc=expand(out("qc/{slide}.png"), slide=SLIDES.index),
        cells=expand(out("cells/{slide}.parquet"), slide=SLIDES.index),
    output:
        out("report.html"),
    params:
        slide_ids=list(SLIDES.index),
        config=config,
        calibration=describe_calibration(config),
        version=cxcr4score.__version__,
    conda:
        "../envs/cxcr4score.yaml"
    log:
        out("logs/report.log"),
    benchmark:
        out("benchmarks/report.tsv")
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/report.py"
