# The HTML report a pathologist opens: intended use, calls with reasons, slides, QC pictures.


rule report:
    input:
        eligibility=out("eligibility.csv"),
        slides=out("slides.csv"),
        qc=expand(out("qc/{slide}.png"), slide=SLIDES.index),
    output:
        out("report.html"),
    params:
        assay=config["assay"],
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
        mem_mb=1000,
    script:
        "../scripts/report.py"
