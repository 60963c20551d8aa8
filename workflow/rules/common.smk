# Sheet loading, typed --config coercion, and the get_* input functions.
import json
import os
import re
import sys
from pathlib import Path

import cxcr4score
from cxcr4score import config as cx_config
from cxcr4score.calibration_record import describe as describe_calibration
from cxcr4score.errors import InputError
from cxcr4score.job_batches import small_image_batches
from cxcr4score.sheets import load_slides, read_patients
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

onstart:
    print(cxcr4score.INTENDED_USE, file=sys.stderr)

# Snakemake passes --config lists and mappings as strings and lets them replace whole mappings
# of the config file: coerce them by the schema's types, deep-merge them into the config files'
# values, fill defaults, validate (errors name the key). The result replaces `config`. The
# config files and the overrides alone are Workflow attributes, not a documented interface:
# if a Snakemake release drops them, the public `config` is used (cx_config.from_snakemake).
try:
    _effective = cx_config.from_snakemake(
        config, getattr(workflow, "configfiles", None),
        getattr(getattr(workflow, "config_settings", None), "overwrite_config", None))
except cx_config.ConfigError as err:
    raise WorkflowError(str(err)) from None
config.clear()
config.update(_effective)

OUTDIR = str(Path(config["outdir"]))
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "cxcr4score" / "numba"))

# Both sheets are checked before anything runs, and every problem of either is listed at once.
# The patients sheet (listed protocol criteria, optional) is an input of the eligibility rule
# alone: editing it reruns only the calls and the report.
PATIENTS_SHEET = config["patients"]
_sheet_problems = []
try:
    SLIDES = load_slides(config["slides"], patient_pattern=config["patient_pattern"])
except InputError as err:
    _sheet_problems.append(f"cannot use slides {config['slides']!r}:\n{err}")
if PATIENTS_SHEET:
    try:
        read_patients(PATIENTS_SHEET)
    except InputError as err:
        _sheet_problems.append(f"cannot use patients {PATIENTS_SHEET!r}:\n{err}")
if _sheet_problems:
    raise WorkflowError("\n".join(_sheet_problems))
validate(SLIDES, "../schemas/slides.schema.yaml")
SLIDES = SLIDES.set_index("slide_id", drop=False)

# Small images are measured several per job, and scored several per job (one start-up each);
# every other slide goes through slide_info, measure_chunk per chunk, merge_slide and qc_slide.
BATCHES = small_image_batches(SLIDES["path"].to_dict(), max_mb=config["small_image_mb"],
                              per_job=config["small_images_per_job"])
_BATCHED = {slide for slides in BATCHES.values() for slide in slides}
# The per-slide rules' {slide}: any slide not in a batch ("(?!)" matches nothing).
PER_SLIDE = "|".join(re.escape(s) for s in SLIDES.index if s not in _BATCHED) or "(?!)"

wildcard_constraints:
    slide=r"[A-Za-z0-9._-]+",
    chunk=r"\d+",

# Config subsets passed as params, so that a change reruns exactly the rules that use it
# (dotted names pick one key of a mapping).
# slide_info measures the nucleus baseline with the nuclei settings (nuclei.background_radius_um, sigma_um).
# slide_info plans the chunks: their halo grows with the nucleus, expansion and membrane keys.
# slide_info takes the segmentation sample inside the ROI's annotations of roi_classes (and the
# QC picture outlines them).
SLIDE_INFO_KEYS = ("analysis_mpp", "default_mpp", "default_i0", "stains", "stain_estimation", "tissue", "nuclei",
                   "cell_expansion_um", "membrane_band_um", "membrane_capture_um", "chunk_mpix", "roi_classes")
PIXEL_KEYS = SLIDE_INFO_KEYS + ("intervals.block_um",)
QC_PICTURE_KEYS = SLIDE_INFO_KEYS
CLASS_KEYS = ("thresholds", "class_rule", "compartments", "membrane_exposed_max", "tumour_cells",
              "eligibility.threshold_tolerance", "pixel_hematoxylin_min", "qc")
CALL_KEYS = ("eligibility", "intervals", "patient_rule", "pixel_thresholds", "calibrated", "calibration",
             "thresholds", "class_rule", "compartments", "internal_control")


def config_subset(keys):
    values = {}
    for key in keys:
        value = config
        for part in key.split("."):
            value = value[part]
        values[key] = value
    return json.dumps(values, sort_keys=True)


def out(path):
    """A path under the configured results folder."""
    return f"{OUTDIR}/{path}"


def get_slide(wildcards):
    return SLIDES.loc[wildcards.slide]


def get_slide_record(wildcards):
    return get_slide(wildcards).to_dict()


def get_slide_inputs(wildcards):
    """The image and, when given, its ROI file: editing either reruns the slide."""
    slide = get_slide(wildcards)
    return {"image": slide["path"], "roi": [slide["roi"]] if slide["roi"] else []}


def get_chunks(wildcards):
    info_path = checkpoints.slide_info.get(slide=wildcards.slide).output.info
    with open(info_path) as handle:
        return json.load(handle)["chunks"]


def get_chunk_measurements(wildcards):
    return {
        "tables": [out(f"slides/{wildcards.slide}/chunks/{c}.parquet") for c in get_chunks(wildcards)],
        "hists": [out(f"slides/{wildcards.slide}/chunks/{c}.hist.npy") for c in get_chunks(wildcards)],
    }


def get_slide_summaries(wildcards):
    return {
        "summaries": [out(f"slides/{s}/summary.json") for s in SLIDES.index],
        "blocks": [out(f"slides/{s}/blocks.parquet") for s in SLIDES.index],
    }


def get_patients_sheet(wildcards):
    """The patients sheet when config `patients` is set, else nothing."""
    return [PATIENTS_SHEET] if PATIENTS_SHEET else []


def listed_criteria_param():
    """Config `listed_criteria` while a patients sheet is set (else '': the rule is then unused,
    and changing it reruns nothing)."""
    return config_subset(["listed_criteria"]) if PATIENTS_SHEET else ""


def get_final_output():
    return [
        out("eligibility.csv"),
        out("slides.csv"),
        out("report.html"),
        *[out(f"qc/{s}.png") for s in SLIDES.index],
        *[out(f"cells/{s}.{suffix}") for s in SLIDES.index for suffix in ("geojson", "geojson.gz")],
    ]
