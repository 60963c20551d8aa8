"""The real `snakemake` command on sample_slides/: expected calls, the output contract,
--config overrides, what a threshold change reruns, and bad input (DESIGN section 4).

Each run happens in a temporary working folder laid out as a checkout (`make_workdir`), so
that `.snakemake/` and results never land in the checkout, and no test changes what another
reads: the demo runs once per module, and a test that reruns it works on its own copy.
"""

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml

from cxcr4score.eligibility import ELIGIBILITY_COLUMNS

from .. import browser

REPO = Path(__file__).resolve().parents[2]
CHECK_CONTRACT = REPO.parent / "shared" / "tools" / "check_contract.py"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SMALL_SLIDE = REPO / "sample_slides" / "P03" / "P03_A.tif"
#: The demo's results folder, given with --config and relative to the working folder (as a
#: user would type it), so that a copy of the working folder is the same run elsewhere.
DEMO_OUTDIR = "demo_results"


def make_workdir(path):
    """A working folder laid out as a checkout: the workflow copied, config/ and sample_slides/ linked.

    Snakemake resolves `configfile:` and the default `slides: config/slides.tsv` against its
    working folder (`--snakefile` with `--directory` alone finds no config), so the folder needs
    all four. config/ is a link, so the sheet's relative slide paths resolve to the checkout's
    sample_slides/ from every working folder: the jobs' inputs and params are then the same in
    a copy of this folder, and a rerun there is incremental (see `demo_copy`).
    """
    path.mkdir(parents=True)
    shutil.copy2(REPO / "Snakefile", path / "Snakefile")
    shutil.copytree(REPO / "workflow", path / "workflow", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("config", "sample_slides"):
        (path / name).symlink_to(REPO / name, target_is_directory=True)
    return path


def snakemake(workdir, *args, check=True):
    """Run the snakemake command line in `workdir` (a checkout's layout), as a user would."""
    command = [str(SNAKEMAKE), "--cores", "2", *args]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture
def workdir(tmp_path):
    """A fresh working folder for this test alone."""
    return make_workdir(tmp_path / "checkout")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The working folder of the demo cohort run once with the default config but outdir=DEMO_OUTDIR.

    Tests read it and never run snakemake in it: a rerun goes to a `demo_copy`.
    """
    workdir = make_workdir(tmp_path_factory.mktemp("demo") / "checkout")
    snakemake(workdir, "--config", f"outdir={DEMO_OUTDIR}")
    return workdir


@pytest.fixture
def demo(demo_run):
    """The demo's results folder (read only)."""
    return demo_run / DEMO_OUTDIR


@pytest.fixture
def demo_copy(demo_run, tmp_path):
    """This test's own copy of the demo's working folder: results, .snakemake metadata and
    timestamps, so that a rerun there is incremental and the shared demo is left as it was."""
    return shutil.copytree(demo_run, tmp_path / "checkout", symlinks=True)


def read_calls(out):
    return pd.read_csv(out / "eligibility.csv", dtype={"patient_id": str})


def test_demo_calls_match_expected(demo):
    """Reference: sample_slides/expected.csv, the generator's truth design."""
    expected = pd.read_csv(REPO / "sample_slides" / "expected.csv", dtype=str)
    calls = read_calls(demo).set_index("patient_id")
    assert calls["call"].to_dict() == dict(zip(expected["patient_id"], expected["call"]))
    # Every demo slide's lymphocytes that are stained read so: no call blames the stain.
    assert not calls["review_reasons"].fillna("").str.contains("internal control").any()


def test_output_contract(demo):
    """Reference: DESIGN section 4 via ../shared/tools/check_contract.py, and the columns here."""
    assert list(read_calls(demo).columns[: len(ELIGIBILITY_COLUMNS)]) == list(ELIGIBILITY_COLUMNS)
    slides = pd.read_csv(demo / "slides.csv", dtype=str)
    for slide_id in slides["slide_id"]:
        assert (demo / "cells" / f"{slide_id}.parquet").is_file()
        detections = json.loads((demo / "cells" / f"{slide_id}.geojson").read_text())["features"]
        assert len(detections) == len(pd.read_parquet(demo / "cells" / f"{slide_id}.parquet"))
        # QuPath cells: the measured cell and nucleus outlines
        assert all(f["properties"]["objectType"] == "cell" and f["geometry"]["type"] == "Polygon"
                   for f in detections)
        assert sum("nucleusGeometry" in f for f in detections) > 0.95 * len(detections)
        assert (demo / "qc" / f"{slide_id}.png").stat().st_size > 10_000
    assert "Research use only" in (demo / "report.html").read_text()
    if not CHECK_CONTRACT.is_file():
        pytest.skip(f"{CHECK_CONTRACT} not present")
    result = subprocess.run([sys.executable, str(CHECK_CONTRACT), str(demo)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_report_renders_in_a_browser(demo, tmp_path):
    """The demo's report.html opened in headless Chromium: one self-contained page (every image
    embedded and decoded, none broken) with the cohort figure, a QC picture and a figure per
    slide, every patient, and a screenshot that is not blank."""
    workdir = tmp_path / "browser"
    workdir.mkdir()
    page = browser.load_page(demo / "report.html", workdir, window_size=(1400, 3000))
    n_slides = len(pd.read_csv(demo / "slides.csv"))
    assert browser.broken_images(page) == []
    assert len(page.images) == 1 + 2 * n_slides
    assert all(image["src"].startswith("data:image/") and image["naturalWidth"] > 300 for image in page.images)
    for patient in read_calls(demo)["patient_id"]:
        assert f"Patient {patient}" in page.dom
    assert not browser.is_blank(page.screenshot)
    # the cohort figure is drawn near the top: the screenshot's upper part holds its coloured calls
    top = page.screenshot[:1200].reshape(-1, 3).astype(int)
    assert (np.abs(top - (46, 125, 50)).max(axis=1) < 40).sum() > 50  # eligible (green) marks


def test_snakemake_report_keeps_its_captions(demo_copy):
    """`snakemake --report` over the demo's results: Snakemake's own report still builds, with
    the captions of the eligibility table and of the QC pictures."""
    snakemake(demo_copy, "--report", "snakemake_report.zip", "--config", f"outdir={DEMO_OUTDIR}")
    with zipfile.ZipFile(demo_copy / "snakemake_report.zip") as bundle:
        text = "".join(bundle.read(name).decode("utf-8", "replace") for name in bundle.namelist()
                       if name.endswith((".html", ".js", ".json")))
    assert "Per-patient CXCR4 eligibility call" in text
    assert "the measured cell and nucleus outlines" in text


def test_reasons_and_review(demo):
    calls = read_calls(demo).set_index("patient_id")
    assert calls.loc["P05", "tumour_source"] == "roi"
    assert calls.loc["P01", "tumour_source"] == "morphology"
    assert "tumour not delineated, tumour cells by morphology" in calls.loc["P01", "reason"]
    assert "P01__P01_A" in calls.loc["P01", "reason"] and "P01__P01_B" in calls.loc["P01", "reason"]
    assert calls["review_required"].all()  # thresholds are not calibrated
    assert calls["review_reasons"].str.contains("thresholds not calibrated").all()


def test_effective_config_written(demo):
    effective = yaml.safe_load((demo / "config.effective.yaml").read_text())
    assert effective["thresholds"] == [0.2, 0.4, 0.6]
    assert effective["outdir"] == DEMO_OUTDIR  # as given with --config


def test_folder_input_gives_the_sheet_slide_ids(workdir, tmp_path):
    """DESIGN section 4: sub-folders are patients, slide_id = {patient_id}__{stem}, ROI sidecar."""
    result = snakemake(workdir, "-n", "--config", "slides=sample_slides", f"outdir={tmp_path / 'r'}")
    sheet = pd.read_csv(REPO / "config" / "slides.tsv", sep="\t", dtype=str)
    for slide_id in sheet["slide_id"]:
        assert f"/cells/{slide_id}.parquet" in result.stdout


#: The rules of each stage: the demo's images are small and run several per job (the
#: "batched" rules); small_image_mb=0 runs every slide through the per-slide ones.
STAGE_RULES = {
    "batched": {"pixels": ("measure_small_images_1",), "scoring": ("score_small_images_1",)},
    "per_slide": {"pixels": ("slide_info", "measure_chunk"), "scoring": ("merge_slide", "qc_slide")},
}
#: The per-slide demo run (stage_run): every slide in its own jobs, in chunks of 512^2 px.
PER_SLIDE_CONFIG = ("small_image_mb=0", "chunk_mpix=0.25")


def _rules_run(output):
    """The rules of the jobs a snakemake log (or dry-run) lists."""
    return set(re.findall(r"^(?:localrule|rule|checkpoint|localcheckpoint) (\w+):", output, flags=re.M))


@pytest.fixture(scope="module")
def stage_run(demo_run, tmp_path_factory):
    """A copy of the demo rerun with every slide in its own jobs (PER_SLIDE_CONFIG), measure_chunk
    on 2 threads in place of 1 (read only; a rerun goes to a copy)."""
    workdir = shutil.copytree(demo_run, tmp_path_factory.mktemp("per_slide") / "checkout", symlinks=True)
    result = snakemake(workdir, "--forceall", "--set-threads", "measure_chunk=2",
                       "--config", f"outdir={DEMO_OUTDIR}", *PER_SLIDE_CONFIG)
    return workdir, result.stdout + result.stderr


def _run_of(path, demo_run, stage_run, tmp_path):
    """(a copy of the working folder, its extra --config) for the batched or the per-slide demo."""
    source, extra = (demo_run, ()) if path == "batched" else (stage_run[0], PER_SLIDE_CONFIG)
    return shutil.copytree(source, tmp_path / "copy", symlinks=True), extra


@pytest.mark.parametrize("path", ["batched", "per_slide"])
def test_threshold_change_reruns_no_pixel_work(demo_run, stage_run, tmp_path, path):
    """The pixel stages hold no scoring threshold: a new threshold reruns no pixel stage."""
    workdir, extra = _run_of(path, demo_run, stage_run, tmp_path)
    jobs = _rules_run(snakemake(workdir, "-n", "--config", f"outdir={DEMO_OUTDIR}", *extra,
                                "thresholds=[0.25,0.5,0.75]").stdout)
    rules = STAGE_RULES[path]
    assert set(rules["scoring"]) <= jobs and "eligibility" in jobs
    assert not jobs & {*rules["pixels"], "validate_inputs"}


@pytest.mark.parametrize("path", ["batched", "per_slide"])
@pytest.mark.parametrize(
    ("override", "reruns", "keeps"),
    [
        ("cell_expansion_um=6", {"pixels"}, {"validate_inputs"}),  # the chunk halo grows with it
        ("nuclei={threshold: 0.06}", {"pixels"}, {"validate_inputs"}),
        ("membrane_exposed_max=0.6", {"scoring"}, {"pixels"}),
        ("patient_rule=any_slide", {"eligibility", "report"}, {"pixels", "scoring"}),
    ],
)
def test_a_key_change_reruns_the_rules_that_read_it(demo_run, stage_run, tmp_path, path, override, reruns, keeps):
    """Scripts read only their rule's params, so each key reruns exactly the rules that use it."""
    workdir, extra = _run_of(path, demo_run, stage_run, tmp_path)
    output = snakemake(workdir, "-n", "--config", f"outdir={DEMO_OUTDIR}", *extra, override).stdout
    jobs = _rules_run(output)
    names = STAGE_RULES[path]
    # A stage's first rule: a dry run cannot list the jobs after a checkpoint that reruns.
    assert {names.get(r, (r,))[0] for r in reruns} <= jobs, output[-2000:]
    assert not jobs & set().union(*(names.get(r, (r,)) for r in keeps)), output[-2000:]


def test_workflow_scripts_read_only_their_params():
    """Reading snakemake.config in a script would let an undeclared key change its output
    without a rerun (issue 22: slide_info read the scoring thresholds that way)."""
    for script in (REPO / "workflow" / "scripts").glob("*.py"):
        assert "snakemake.config" not in script.read_text(), script.name


def test_calibration_record_clears_the_flag_and_reruns_only_the_calls(demo_copy):
    """`cxcr4score calibrate` on the demo's results, scored by a "pathologist" who gave our own
    h_score: its measure at the configured thresholds is eligibility.csv's (reference), the fit
    keeps those thresholds, and a run that references the record is calibrated."""
    out = demo_copy / DEMO_OUTDIR
    calls = read_calls(out)
    truth, record = demo_copy / "pathologist.csv", demo_copy / "calibration.yaml"
    calls[["patient_id", "h_score"]].to_csv(truth, index=False)
    cli = Path(sys.executable).with_name("cxcr4score")
    result = subprocess.run([str(cli), "calibrate", "--truth", str(truth), "--results", DEMO_OUTDIR,
                             "--out", str(record), "--json", "record.json"],
                            cwd=demo_copy, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    payload = json.loads((demo_copy / "record.json").read_text())
    ours = calls.set_index("patient_id")["h_score"]
    for row in payload["per_unit"]:
        assert row["uncalibrated"] == pytest.approx(ours[row["patient_id"]], abs=1e-6)
    assert payload["thresholds"] == [0.2, 0.4, 0.6]
    assert payload["cross_validation"]["held_out"]["mean_abs_error"] == pytest.approx(0, abs=1e-6)
    assert f"calibration: {record}" in result.stdout

    rerun = snakemake(demo_copy, "--config", f"outdir={DEMO_OUTDIR}", f"calibration={record}")
    assert not re.search(r"rule (slide_info|measure_chunk|merge_slide|\w+_small_images_\d+):", rerun.stdout + rerun.stderr)
    calibrated = read_calls(out)
    assert calibrated["call"].tolist() == calls["call"].tolist()
    assert not calibrated["review_reasons"].fillna("").str.contains("thresholds not calibrated").any()
    assert yaml.safe_load((out / "config.effective.yaml").read_text())["calibrated"] is True
    report = html.unescape((out / "report.html").read_text())
    assert f"calibrated by {record}, fitted to the pathologist's h_score of 6 patients" in report
    moved = snakemake(demo_copy, "-n", "--config", f"outdir={DEMO_OUTDIR}", f"calibration={record}",
                      "thresholds=[0.25,0.5,0.75]", check=False)
    assert moved.returncode != 0 and "are not the calibrated" in moved.stdout + moved.stderr


def test_per_slide_jobs_on_one_thread_in_smaller_chunks_give_identical_bytes(demo_run, stage_run):
    """Every slide rerun in its own jobs (not several small images per job), with measure_chunk
    on 2 threads in place of 1 and in chunks of 512^2 px in place of 2048^2: eligibility.csv,
    slides.csv, every cells table, GeoJSON and QC picture are byte for byte the demo's
    (integer sums and slide-wide cell order, DESIGN 6)."""
    workdir, log = stage_run
    first, again = demo_run / DEMO_OUTDIR, workdir / DEMO_OUTDIR
    assert (first / "benchmarks" / "measure_small_images" / "1.tsv").is_file()  # the demo ran batched
    assert "small_images" not in log
    assert len(re.findall(r"rule measure_chunk:", log)) > 2 * len(list((first / "cells").glob("*.parquet")))
    names = ["eligibility.csv", "slides.csv"] + sorted(f"cells/{p.name}" for p in (first / "cells").glob("*.parquet"))
    names += sorted(f"cells/{p.name}" for p in (first / "cells").glob("*.geojson*"))
    names += sorted(f"qc/{p.name}" for p in (first / "qc").glob("*.png"))
    assert len(names) > 2
    for name in names:
        assert (again / name).read_bytes() == (first / name).read_bytes(), name


def test_killed_run_resumes_to_the_same_bytes(demo_run, workdir):
    """SIGKILL to snakemake and its jobs once the first images are measured; `snakemake --unlock`
    and the same command with --rerun-incomplete (as the README says): the run finishes, and
    its calls, slides and cells tables are byte for byte the uninterrupted run's (a job's
    outputs are written under temporary names and moved in place together at its end;
    Snakemake reruns the jobs it did not see finish)."""
    command = [str(SNAKEMAKE), "--cores", "2", "--config", f"outdir={DEMO_OUTDIR}"]
    with open(workdir / "killed.log", "w") as log:
        process = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 600
        while process.poll() is None and time.monotonic() < deadline:
            if any((workdir / DEMO_OUTDIR / "slides").glob("*/measurements.parquet")):
                break
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    out = workdir / DEMO_OUTDIR
    assert not (out / "eligibility.csv").exists()  # stopped mid-way
    snakemake(workdir, "--unlock", "--config", f"outdir={DEMO_OUTDIR}")
    snakemake(workdir, "--rerun-incomplete", "--config", f"outdir={DEMO_OUTDIR}")
    first = demo_run / DEMO_OUTDIR
    names = ["eligibility.csv", "slides.csv"] + sorted(f"cells/{p.name}" for p in (first / "cells").glob("*.parquet"))
    for name in names:
        assert (out / name).read_bytes() == (first / name).read_bytes(), name


@pytest.mark.parametrize(
    ("override", "column", "value"),
    [
        ("thresholds=[0.25,0.5,0.75]", "thresholds", "0.25/0.5/0.75"),
        ("eligibility={metric: h_score, cutoff: 5}", "metric", "h_score"),
        ("compartments=[membrane]", "compartments", "membrane"),
        ("class_rule=cell", "compartments", "cell"),
        ("patient_rule=any_slide", "reason", "any_slide"),
    ],
)
def test_config_override_reaches_the_calls(demo_copy, override, column, value):
    """Each documented --config key, through the real command line (reruns a copy of the demo)."""
    result = snakemake(demo_copy, "--config", f"outdir={DEMO_OUTDIR}", override)
    # The copy is the demo run elsewhere: no override here reaches a pixel stage, so none reruns.
    assert not re.search(r"rule (validate_inputs|slide_info|measure_chunk|measure_small_images_\d+):",
                         result.stdout + result.stderr)
    out = demo_copy / DEMO_OUTDIR
    calls = read_calls(out)
    assert value in str(calls.set_index("patient_id").loc["P01", column])
    if override.startswith("eligibility"):
        assert (calls["cutoff"] == 5).all()
        assert yaml.safe_load((out / "config.effective.yaml").read_text())["eligibility"]["min_cells"] == 100


def test_patients_sheet_appends_listed_criteria_and_reruns_only_the_calls(demo_copy):
    """config patients: eligibility.csv gains exactly listed_criteria_met and _reason at the end,
    every other value as before; only the calls and the report rerun; without it the file is
    byte for byte the demo's again. Reference: the default rule worked by hand per patient."""
    out = demo_copy / DEMO_OUTDIR
    before = (out / "eligibility.csv").read_bytes()
    calls = pd.read_csv(out / "eligibility.csv", dtype=str)
    (demo_copy / "patients.csv").write_text(  # P06 not listed, X99 has no slides, mrn never read
        "patient_id,her2_status,ecog,mrn\nP01,negative,1,MRN-111\nP02,Positive,0,MRN-222\nP03,negative,2,MRN-333\n"
        "P04,,1,MRN-444\nP05,LOW,0,MRN-555\nX99,negative,0,MRN-999\n")
    result = snakemake(demo_copy, "--config", f"outdir={DEMO_OUTDIR}", "patients=patients.csv")
    log = result.stdout + result.stderr
    assert not re.search(r"rule (validate_inputs|slide_info|measure_chunk|merge_slide|qc_slide|\w+_small_images_\d+):",
                         log)
    assert "rule eligibility:" in log and "rule report:" in log
    assert "1 patient(s) without slides left out: X99" in log
    listed = pd.read_csv(out / "eligibility.csv", dtype=str)
    assert list(listed.columns) == [*calls.columns, "listed_criteria_met", "listed_criteria_reason"]
    pd.testing.assert_frame_equal(listed[calls.columns], calls)
    assert listed.set_index("patient_id")["listed_criteria_met"].to_dict() == {
        "P01": "true", "P02": "false", "P03": "false", "P04": "unknown", "P05": "true", "P06": "unknown"}
    assert "MRN" not in (out / "eligibility.csv").read_text()

    with open(demo_copy / "patients.csv", "a") as sheet:
        sheet.write("P06,negative,0,MRN-666\n")
    edited = snakemake(demo_copy, "-n", "--config", f"outdir={DEMO_OUTDIR}", "patients=patients.csv")
    assert re.findall(r"^rule (\w+):", edited.stdout, flags=re.M) == ["eligibility", "report", "all"]

    snakemake(demo_copy, "--config", f"outdir={DEMO_OUTDIR}")
    assert (out / "eligibility.csv").read_bytes() == before


def test_bad_patients_sheet_is_listed_with_the_slide_sheet_problems(workdir, tmp_path):
    sheet = _sheet(tmp_path / "s.tsv", [("007", "S1", str(tmp_path / "missing.tif"))])
    (tmp_path / "patients.tsv").write_text("patient_id\ther2_status\tecog\n007\tneg\t1\n")
    result = snakemake(workdir, "-n", "--config", f"slides={sheet}", f"patients={tmp_path / 'patients.tsv'}",
                       f"outdir={tmp_path / 'r'}", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output
    assert "s.tsv row 1" in output and "missing.tif" in output
    assert "patients.tsv row 1: her2_status 'neg' is not one of" in output


def _sheet(path, rows):
    pd.DataFrame(rows, columns=["patient_id", "slide_id", "path"]).to_csv(path, sep="\t", index=False)
    return path


def test_bad_slide_stop_lists_every_problem(workdir, tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 this is not a TIFF")
    sheet = _sheet(tmp_path / "s.tsv", [("A", "A1", str(SMALL_SLIDE)), ("B", "B1", str(broken))])
    result = snakemake(workdir, "--config", f"slides={sheet}", f"outdir={tmp_path / 'r'}", check=False)
    assert result.returncode != 0
    assert "broken.tif" in result.stderr and "B1" in result.stderr
    assert "Traceback" not in result.stderr


def test_slide_damaged_past_its_first_tile_stops_with_its_name(workdir, tmp_path):
    """validate_inputs decodes one tile; a slide truncated further in stops at slide_info,
    which names it on the console, without a traceback."""
    data = SMALL_SLIDE.read_bytes()
    damaged = tmp_path / "damaged.tif"
    damaged.write_bytes(data[: int(len(data) * 0.3)])
    sheet = _sheet(tmp_path / "s.tsv", [("A", "A1", str(damaged))])
    result = snakemake(workdir, "--config", f"slides={sheet}", f"outdir={tmp_path / 'r'}", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "slide A1 cannot be used (on_bad_slide: stop)" in output and "damaged.tif" in output
    assert "Traceback" not in output


def _pyramid_damaged_in_level0(path):
    """A 4096^2 px deflate TIFF pyramid (0.5 um/px, one reduced level) whose level 0 has one
    garbled tile: its overview comes from the reduced level and its first tile is sound, so
    only the chunks that read that tile see the damage."""
    from cxcr4score import synthetic

    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(1024.0, 1024.0)), seed=5)
    rgb = np.ascontiguousarray(np.tile(tile.rgb, (2, 2, 1)))
    options = dict(photometric="rgb", tile=(256, 256), compression="zlib", resolution=(2e4, 2e4),
                   resolutionunit="CENTIMETER")
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb, subifds=1, **options)
        tif.write(np.ascontiguousarray(rgb[::2, ::2]), subfiletype=1, **options)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        middle = len(page.dataoffsets) // 2 + 3
        offset, size = page.dataoffsets[middle], page.databytecounts[middle]
    data = bytearray(path.read_bytes())
    data[offset:offset + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("small_image_mb", "measured_by"), [("64", "measure_small_images_1"), ("0", "measure_chunk")])
@pytest.mark.parametrize("on_bad_slide", ["stop", "skip"])
def test_slide_damaged_where_only_a_chunk_reads_it(workdir, tmp_path, on_bad_slide, small_image_mb, measured_by):
    """stop: the run stops naming slide, chunk and decoder error, no traceback; skip: that slide
    fails with the reason and the other patient's result is complete. The same with the two
    slides measured in one job (small images) as in their own jobs."""
    damaged = _pyramid_damaged_in_level0(tmp_path / "pyramid.tif")
    sheet = _sheet(tmp_path / "s.tsv", [("A", "A1", str(SMALL_SLIDE)), ("B", "B1", str(damaged))])
    out = tmp_path / "r"
    result = snakemake(workdir, "--config", f"slides={sheet}", f"outdir={out}", f"on_bad_slide={on_bad_slide}",
                       f"small_image_mb={small_image_mb}", check=False)
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert f"rule {measured_by}:" in output
    if on_bad_slide == "stop":
        assert result.returncode != 0
        assert "slide B1, chunk" in output and "pyramid.tif: cannot read the image (DeflateError" in output
        return
    assert result.returncode == 0, output[-3000:]
    slides = pd.read_csv(out / "slides.csv", dtype=str).set_index("slide_id")
    assert slides.loc["B1", "qc_status"] == "failed" and "cannot be read where chunk" in slides.loc["B1", "qc_message"]
    assert slides.loc["A1", "qc_status"] != "failed"
    calls = read_calls(out).set_index("patient_id")
    assert calls.loc["B", "call"] == "inadequate" and "DeflateError" in calls.loc["B", "reason"]
    assert int(calls.loc["A", "n_cells"]) > 0


def _row_line(path, first_field):
    """The line of a CSV whose first field is `first_field`, as written (bytes compared)."""
    return next(line for line in path.read_text().splitlines() if line.split(",", 1)[0] == first_field)


def test_bad_slide_skip_keeps_other_results(workdir, tmp_path):
    """With on_bad_slide=skip the broken slide fails with its reason, and the other patient's
    rows and cells table are byte for byte those of a run without the broken slide."""
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 this is not a TIFF")
    sheet = _sheet(tmp_path / "s.tsv", [("A", "A1", str(SMALL_SLIDE)), ("B", "B1", str(broken))])
    out = tmp_path / "r"
    snakemake(workdir, "--config", f"slides={sheet}", f"outdir={out}", "on_bad_slide=skip")
    slides = pd.read_csv(out / "slides.csv", dtype=str).set_index("slide_id")
    assert slides.loc["B1", "qc_status"] == "failed" and "broken.tif" in slides.loc["B1", "qc_message"]
    assert slides.loc["A1", "qc_status"] != "failed"
    calls = read_calls(out).set_index("patient_id")
    assert calls.loc["B", "call"] == "inadequate"
    assert calls.loc["A", "call"] == "inadequate"  # P03's fragment: too few cells, but scored
    assert int(calls.loc["A", "n_cells"]) > 0
    clean_sheet = _sheet(tmp_path / "clean.tsv", [("A", "A1", str(SMALL_SLIDE))])
    clean = tmp_path / "clean"
    snakemake(workdir, "--config", f"slides={clean_sheet}", f"outdir={clean}")
    assert _row_line(out / "eligibility.csv", "A") == _row_line(clean / "eligibility.csv", "A")
    assert _row_line(out / "slides.csv", "A1") == _row_line(clean / "slides.csv", "A1")
    assert (out / "cells" / "A1.parquet").read_bytes() == (clean / "cells" / "A1.parquet").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["slides=/no/such/sheet.tsv"], "/no/such/sheet.tsv"),
        (["thresholds=[0.4,0.2,0.6]"], "'thresholds'"),
        (["eligibility={metric: hscore}"], "'eligibility.metric'"),
        (["patient_rule=first"], "'patient_rule'"),
    ],
)
def test_bad_config_or_sheet_stops_at_parse_time(workdir, tmp_path, args, message):
    result = snakemake(workdir, "-n", "--config", f"outdir={tmp_path / 'r'}", *args, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_sheet_with_missing_file_names_the_row(workdir, tmp_path):
    sheet = _sheet(tmp_path / "s.tsv", [("007", "S1", str(tmp_path / "missing.tif")), ("008", "S2", str(SMALL_SLIDE))])
    result = snakemake(workdir, "-n", "--config", f"slides={sheet}", f"outdir={tmp_path / 'r'}", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "s.tsv row 1" in output and "missing.tif" in output


def test_cli_score_same_code_path(tmp_path):
    """`cxcr4score score`: one line per image; a broken image is reported, the others scored."""
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not an image")
    shutil.copy(SMALL_SLIDE, tmp_path / "small.tif")
    cli = Path(sys.executable).with_name("cxcr4score")
    result = subprocess.run([str(cli), "score", str(tmp_path / "small.tif"), str(broken), "--out", str(tmp_path / "o")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "broken.tif" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.startswith("small: ")
    slides = pd.read_csv(tmp_path / "o" / "slides.csv")
    assert list(slides["slide_id"]) == ["small"]
    cells = pd.read_parquet(tmp_path / "o" / "cells" / "small.parquet")
    assert int(slides.loc[0, "n_cells"]) == cells["scored"].sum() > 0  # tumour cells by morphology
    assert (tmp_path / "o" / "qc" / "small.png").stat().st_size > 10_000
    assert not (tmp_path / "o" / "qc" / "broken.png").exists()
    assert "%|" not in result.stderr  # no progress bar when stderr is not a terminal
    assert yaml.safe_load((tmp_path / "o" / "config.effective.yaml").read_text())["thresholds"] == [0.2, 0.4, 0.6]
