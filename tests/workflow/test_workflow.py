"""The real `snakemake` command on sample_slides/: expected calls, the output contract,
--config overrides, what a threshold change reruns, and bad input (DESIGN section 4)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cxcr4score.eligibility import ELIGIBILITY_COLUMNS

REPO = Path(__file__).resolve().parents[2]
CHECK_CONTRACT = REPO.parent / "shared" / "tools" / "check_contract.py"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
SMALL_SLIDE = REPO / "sample_slides" / "P03" / "P03_A.tif"


def snakemake(*args, check=True):
    """Run the snakemake command line from the repository root, as a user would."""
    command = [str(SNAKEMAKE), "--cores", "2", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo cohort run once with the default config into a temporary results folder."""
    out = tmp_path_factory.mktemp("demo") / "results"
    snakemake("--config", f"outdir={out}")
    return out


def read_calls(out):
    return pd.read_csv(out / "eligibility.csv", dtype={"patient_id": str})


def test_demo_calls_match_expected(demo):
    """Reference: sample_slides/expected.csv, the generator's truth design."""
    expected = pd.read_csv(REPO / "sample_slides" / "expected.csv", dtype=str)
    calls = read_calls(demo).set_index("patient_id")["call"]
    assert calls.to_dict() == dict(zip(expected["patient_id"], expected["call"]))


def test_output_contract(demo):
    """Reference: DESIGN section 4 via ../shared/tools/check_contract.py, and the columns here."""
    assert list(read_calls(demo).columns[: len(ELIGIBILITY_COLUMNS)]) == list(ELIGIBILITY_COLUMNS)
    slides = pd.read_csv(demo / "slides.csv", dtype=str)
    for slide_id in slides["slide_id"]:
        assert (demo / "cells" / f"{slide_id}.parquet").is_file()
        detections = json.loads((demo / "cells" / f"{slide_id}.geojson").read_text())["features"]
        assert len(detections) == len(pd.read_parquet(demo / "cells" / f"{slide_id}.parquet"))
        assert (demo / "qc" / f"{slide_id}.png").stat().st_size > 10_000
    assert "Research use only" in (demo / "report.html").read_text()
    if not CHECK_CONTRACT.is_file():
        pytest.skip(f"{CHECK_CONTRACT} not present")
    result = subprocess.run([sys.executable, str(CHECK_CONTRACT), str(demo)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


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
    assert effective["outdir"] == str(demo)


def test_folder_input_gives_the_sheet_slide_ids(tmp_path):
    """DESIGN section 4: sub-folders are patients, slide_id = {patient_id}__{stem}, ROI sidecar."""
    result = snakemake("-n", "--config", "slides=sample_slides", f"outdir={tmp_path / 'r'}")
    sheet = pd.read_csv(REPO / "config" / "slides.tsv", sep="\t", dtype=str)
    for slide_id in sheet["slide_id"]:
        assert f"slide={slide_id}" in result.stdout


def test_threshold_change_reruns_no_pixel_work(demo):
    """measure_chunk holds no scoring threshold: a new threshold reruns no pixel stage."""
    result = snakemake("-n", "--config", f"outdir={demo}", "thresholds=[0.25,0.5,0.75]")
    jobs = result.stdout
    assert "merge_slide" in jobs and "eligibility" in jobs
    assert "measure_chunk" not in jobs and "slide_info" not in jobs and "validate_inputs" not in jobs


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
def test_config_override_reaches_the_calls(demo, override, column, value):
    """Each documented --config key, through the real command line (runs last: it reruns the demo)."""
    snakemake("--config", f"outdir={demo}", override)
    calls = read_calls(demo)
    assert value in str(calls.set_index("patient_id").loc["P01", column])
    if override.startswith("eligibility"):
        assert (calls["cutoff"] == 5).all()
        assert yaml.safe_load((demo / "config.effective.yaml").read_text())["eligibility"]["min_cells"] == 100


def _sheet(path, rows):
    pd.DataFrame(rows, columns=["patient_id", "slide_id", "path"]).to_csv(path, sep="\t", index=False)
    return path


def test_bad_slide_stop_lists_every_problem(tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 this is not a TIFF")
    sheet = _sheet(tmp_path / "s.tsv", [("A", "A1", str(SMALL_SLIDE)), ("B", "B1", str(broken))])
    result = snakemake("--config", f"slides={sheet}", f"outdir={tmp_path / 'r'}", check=False)
    assert result.returncode != 0
    assert "broken.tif" in result.stderr and "B1" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_slide_skip_keeps_other_results(tmp_path):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00 this is not a TIFF")
    sheet = _sheet(tmp_path / "s.tsv", [("A", "A1", str(SMALL_SLIDE)), ("B", "B1", str(broken))])
    out = tmp_path / "r"
    snakemake("--config", f"slides={sheet}", f"outdir={out}", "on_bad_slide=skip")
    slides = pd.read_csv(out / "slides.csv", dtype=str).set_index("slide_id")
    assert slides.loc["B1", "qc_status"] == "failed" and "broken.tif" in slides.loc["B1", "qc_message"]
    assert slides.loc["A1", "qc_status"] != "failed"
    calls = read_calls(out).set_index("patient_id")
    assert calls.loc["B", "call"] == "inadequate"
    assert calls.loc["A", "call"] == "inadequate"  # P03's fragment: too few cells, but scored
    assert int(calls.loc["A", "n_cells"]) > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["slides=/no/such/sheet.tsv"], "/no/such/sheet.tsv"),
        (["thresholds=[0.4,0.2,0.6]"], "'thresholds'"),
        (["eligibility={metric: hscore}"], "'eligibility.metric'"),
        (["patient_rule=first"], "'patient_rule'"),
    ],
)
def test_bad_config_or_sheet_stops_at_parse_time(tmp_path, args, message):
    result = snakemake("-n", "--config", f"outdir={tmp_path}", *args, check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_sheet_with_missing_file_names_the_row(tmp_path):
    sheet = _sheet(tmp_path / "s.tsv", [("007", "S1", str(tmp_path / "missing.tif")), ("008", "S2", str(SMALL_SLIDE))])
    result = snakemake("-n", "--config", f"slides={sheet}", f"outdir={tmp_path / 'r'}", check=False)
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
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert "broken.tif" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout.startswith("small: ")
    slides = pd.read_csv(tmp_path / "o" / "slides.csv")
    assert list(slides["slide_id"]) == ["small"]
    cells = pd.read_parquet(tmp_path / "o" / "cells" / "small.parquet")
    assert int(slides.loc[0, "n_cells"]) == cells["scored"].sum() > 0  # tumour cells by morphology
