# Per-slide stages: validate all inputs, slide metadata (checkpoint), pixel measurements per
# chunk, merge with thresholds, QC picture. Small images (BATCHES, common.smk) go through the
# same stages several per job: measure_small_images_{batch}, then score_small_images_{batch}.


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
    wildcard_constraints:
        slide=PER_SLIDE,
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
    wildcard_constraints:
        slide=PER_SLIDE,
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
    # One thread: much of a tile's work is single-threaded, so two one-thread jobs on two cores
    # finish a slide sooner than one two-thread job at a time (a 1 Gpix slide: 32 s against 37).
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/measure_chunk.py"


rule merge_slide:
    wildcard_constraints:
        slide=PER_SLIDE,
    input:
        unpack(get_chunk_measurements),
        info=out("slides/{slide}/info.json"),
    output:
        cells=out("cells/{slide}.parquet"),
        blocks=out("slides/{slide}/blocks.parquet"),
        summary=out("slides/{slide}/summary.json"),
    params:
        class_config=config_subset(CLASS_KEYS),
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


# The cells as QuPath cell objects (File > Import objects), for a look on the slide; gzipped
# always, and plain unless the slide has more than geojson_compress_above cells (the plain file
# then holds a note naming the .gz). Its own rule: the calls and the report need not wait for it.
rule cells_geojson:
    wildcard_constraints:
        slide=PER_SLIDE,
    # Started before qc_slide and eligibility, which are ready at the same time: it is the
    # longest of them on a whole slide (5.5 s for 130k cells, against 1-2 s each), and the
    # calls, QC and report then run beside it, not before it.
    priority: 1
    input:
        cells=out("cells/{slide}.parquet"),
    output:
        geojson=out("cells/{slide}.geojson"),
        geojson_gz=out("cells/{slide}.geojson.gz"),
    params:
        geojson_compress_above=config["geojson_compress_above"],
        version=cxcr4score.__version__,
    conda:
        "../envs/cxcr4score.yaml"
    log:
        out("logs/cells_geojson/{slide}.log"),
    benchmark:
        out("benchmarks/cells_geojson/{slide}.tsv")
    threads: 1
    resources:
        mem_mb=2000,
    script:
        "../scripts/cells_geojson.py"


rule qc_slide:
    wildcard_constraints:
        slide=PER_SLIDE,
    input:
        unpack(get_slide_inputs),
        info=out("slides/{slide}/info.json"),
        summary=out("slides/{slide}/summary.json"),
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


def _batch_files(slides, pattern):
    return [out(pattern.format(slide=slide)) for slide in slides]


def _batch_inputs(slides):
    """The batch's images and ROI files: editing one reruns the batch."""
    return {"images": [SLIDES.loc[s, "path"] for s in slides],
            "rois": [SLIDES.loc[s, "roi"] for s in slides if SLIDES.loc[s, "roi"]]}


# One pair of rules per batch: Snakemake names every output of a rule, and a batch's are the
# per-slide files of its slides (the same files the per-slide rules write for other slides).
for batch, batch_slides in BATCHES.items():

    rule:
        name:
            f"measure_small_images_{batch}"
        input:
            **_batch_inputs(batch_slides),
            validation=out("validation.json"),
        output:
            info=_batch_files(batch_slides, "slides/{slide}/info.json"),
            table=_batch_files(batch_slides, "slides/{slide}/measurements.parquet"),
            hist=_batch_files(batch_slides, "slides/{slide}/measurements.hist.npy"),
        params:
            slides=[SLIDES.loc[s].to_dict() for s in batch_slides],
            pixel_config=config_subset(PIXEL_KEYS),
            on_bad_slide=config["on_bad_slide"],
            version=cxcr4score.__version__,
        conda:
            "../envs/cxcr4score.yaml"
        log:
            out(f"logs/measure_small_images/{batch}.log"),
        benchmark:
            out(f"benchmarks/measure_small_images/{batch}.tsv")
        threads: 1
        resources:
            mem_mb=4000,
        script:
            "../scripts/measure_small_images.py"

    rule:
        name:
            f"score_small_images_{batch}"
        input:
            **_batch_inputs(batch_slides),
            info=_batch_files(batch_slides, "slides/{slide}/info.json"),
            table=_batch_files(batch_slides, "slides/{slide}/measurements.parquet"),
            hist=_batch_files(batch_slides, "slides/{slide}/measurements.hist.npy"),
        output:
            cells=_batch_files(batch_slides, "cells/{slide}.parquet"),
            geojson=_batch_files(batch_slides, "cells/{slide}.geojson"),
            geojson_gz=_batch_files(batch_slides, "cells/{slide}.geojson.gz"),
            blocks=_batch_files(batch_slides, "slides/{slide}/blocks.parquet"),
            summary=_batch_files(batch_slides, "slides/{slide}/summary.json"),
            qc=[report(path, caption="../report/qc.rst", category="QC pictures")
                for path in _batch_files(batch_slides, "qc/{slide}.png")],
        params:
            slide_ids=batch_slides,
            class_config=config_subset(CLASS_KEYS),
            qc_config=config_subset(QC_PICTURE_KEYS),
            geojson_compress_above=config["geojson_compress_above"],
            on_bad_slide=config["on_bad_slide"],
            version=cxcr4score.__version__,
        conda:
            "../envs/cxcr4score.yaml"
        log:
            out(f"logs/score_small_images/{batch}.log"),
        benchmark:
            out(f"benchmarks/score_small_images/{batch}.tsv")
        threads: 1
        resources:
            mem_mb=2000,
        script:
            "../scripts/score_small_images.py"
