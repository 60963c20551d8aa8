# Per-slide stages: validate all inputs, slide metadata (checkpoint), pixel measurements per
# chunk, merge with thresholds, QC picture.


localrules:
    validate_inputs,


rule validate_inputs:
    input:
        images=SLIDES["path"].tolist(),
    output:
        out("validation.json"),
    params:
        slides=SLIDES.to_dict(orient="records"),
        on_bad_slide=config["on_bad_slide"],
        roi_classes=config["roi_classes"],
        default_mpp=config["default_mpp"],
        version=cxcr4score.__version__,
    conda:
        "../envs/cxcr4score.yaml"
    log:
        out("logs/validate_inputs.log"),
    benchmark:
        out("benchmarks/validate_inputs.tsv")
    threads: 1
    resources:
        mem_mb=1000,
    script:
        "../scripts/validate_inputs.py"


checkpoint slide_info:
    input:
        unpack(get_slide_inputs),
        validation=out("validation.json"),
    output:
        info=out("slides/{slide}/info.json"),
    params:
        slide=get_slide_record,
        slide_config=config_subset(SLIDE_INFO_KEYS),
        on_bad_slide=config["on_bad_slide"],
        version=cxcr4score.__version__,
    conda:
        "../envs/cxcr4score.yaml"
    log:
        out("logs/slide_info/{slide}.log"),
    benchmark:
        out("benchmarks/slide_info/{slide}.tsv")
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/slide_info.py"


rule measure_chunk:
    input:
        unpack(get_slide_inputs),
        info=out("slides/{slide}/info.json"),
    output:
        # Kept, not temp(): merge_slide reruns on every threshold change and must not
        # trigger pixel work again.
        table=out("slides/{slide}/chunks/{chunk}.parquet"),
        hist=out("slides/{slide}/chunks/{chunk}.hist.npy"),
    params:
        pixel_config=config_subset(PIXEL_KEYS),
        version=cxcr4score.__version__,
    conda:
        "../envs/cxcr4score.yaml"
    log:
        out("logs/measure_chunk/{slide}/{chunk}.log"),
    benchmark:
        out("benchmarks/measure_chunk/{slide}/{chunk}.tsv")
    threads: 2
    resources:
        mem_mb=4000,
    script:
        "../scripts/measure_chunk.py"


rule merge_slide:
    input:
        unpack(get_chunk_measurements),
        info=out("slides/{slide}/info.json"),
    output:
        cells=out("cells/{slide}.parquet"),
        # The same cells as QuPath cell objects (File > Import objects), for a look on the slide;
        # gzipped always, and plain unless the slide has more than geojson_compress_above
        # cells (the plain file then holds a note naming the .gz).
        geojson=out("cells/{slide}.geojson"),
        geojson_gz=out("cells/{slide}.geojson.gz"),
        blocks=out("slides/{slide}/blocks.parquet"),
        summary=out("slides/{slide}/summary.json"),
    params:
        class_config=config_subset(CLASS_KEYS),
        geojson_compress_above=config["geojson_compress_above"],
        on_bad_slide=config["on_bad_slide"],
        version=cxcr4score.__version__,
    conda:
        "../envs/cxcr4score.yaml"
    log:
        out("logs/merge_slide/{slide}.log"),
    benchmark:
        out("benchmarks/merge_slide/{slide}.tsv")
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/merge_slide.py"


rule qc_slide:
    input:
        unpack(get_slide_inputs),
        info=out("slides/{slide}/info.json"),
        cells=out("cells/{slide}.parquet"),
    output:
        report(out("qc/{slide}.png"), caption="../report/qc.rst", category="QC pictures"),
    params:
        qc_config=config_subset(QC_PICTURE_KEYS),
        version=cxcr4score.__version__,
    conda:
        "../envs/cxcr4score.yaml"
    log:
        out("logs/qc_slide/{slide}.log"),
    benchmark:
        out("benchmarks/qc_slide/{slide}.tsv")
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/qc_slide.py"
