"""The whole-slide benchmark (``cxcr4score bench slide``) on a small generated slide: the
command runs end to end (slide, workflow, reference), its figures agree with
each other, and the slide is a pyramid our reader and OpenSlide read at 0.25 um/px. No speed
target is asserted: those are read off the full-size run (docs/performance.md)."""

import json
import time

import numpy as np
import pytest
import tifffile

from cxcr4score import cli, grid
from cxcr4score.bench import slide, speed
from cxcr4score.slide_reader import open_slide

SIZE = 4096
CORES = 2


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """``cxcr4score bench slide`` on a 4096 px slide: the JSON it wrote, its wall seconds, its folder."""
    workdir = tmp_path_factory.mktemp("bench_slide")
    out = workdir / "result.json"
    start = time.perf_counter()
    code = cli.main(["bench", "slide", "--size", str(SIZE), "--cores", str(CORES), "--workdir", str(workdir),
                     "--json", str(out)])
    seconds = time.perf_counter() - start
    assert code == 0
    return json.loads(out.read_text()), seconds, workdir


def test_workflow_figures_are_consistent(small_run):
    result, seconds, _ = small_run
    flow = result["workflow"]
    assert flow["cells"] > 500  # a quarter of a 1 mm section of generated tumour and stroma
    rules = flow["rules"]
    assert flow["analysis_mpix"] == pytest.approx(SIZE * SIZE / 4 / 1e6)
    assert 0 < flow["wall_s"] < seconds
    assert flow["mpix_s_per_core"] == pytest.approx(flow["analysis_mpix"] / flow["wall_s"] / CORES)
    assert flow["tissue_mpix"] == pytest.approx(slide.TISSUE_FRACTION * flow["analysis_mpix"])
    assert 0 < flow["scored_cells"] <= flow["cells"]
    assert {"validate_inputs", "eligibility", "report"} <= set(rules)
    for timing in rules.values():
        assert timing["jobs"] == len(timing["seconds"]) >= 1
        assert 0 < timing["median_s"] <= timing["max_s"] <= timing["total_s"]
        assert timing["max_rss_mb"] is None or timing["max_rss_mb"] > 50  # a Python process with NumPy
    # Jobs cannot have run longer in total than the cores over the wall time.
    assert sum(t["total_s"] for t in rules.values()) <= flow["wall_s"] * CORES
    # More cores never lengthen the modelled critical path.
    assert 0 < result["projection"]["projected_s"] <= flow["wall_s"] + 1e-9


def test_reference_and_ratio(small_run):
    result, _, _ = small_run
    reference = result["reference"]
    assert reference["side"] == 1024  # inside the section of a 4096 px slide
    assert reference["reader"] == "OpenSlide (aperio)"
    assert reference["nuclei"] > 100 and reference["mpix_s"] > 0
    assert reference["mpix_s"] == pytest.approx(reference["mpix"] / reference["seconds"])
    assert result["ratio"] == pytest.approx(result["workflow"]["mpix_s_per_core"] / reference["mpix_s"])
    text = slide.format_report(result)
    assert f"ratio ours / reference, Mpix/s per core: {result['ratio']:.1f} x" in text
    assert "validate_inputs" in text


def test_pyramid_levels_and_pixel_size(small_run):
    """Reference: level_sides (4x steps down to below 2048 px); MPP in the Aperio description."""
    import openslide

    path = small_run[0]["slide"]["path"]
    with open_slide(path) as reader:
        assert [level.shape for level in reader.levels] == [(4096, 4096), (1024, 1024)]
        assert (reader.mpp, reader.mpp_source, reader.format) == (0.25, "svs", "svs")
        analysis = grid.choose_grid(reader.levels, native_mpp=reader.mpp, analysis_mpp=0.5)
        assert (analysis.level, analysis.shape) == (0, (2048, 2048))
        overview = reader.read_region(1, 0, 0, 1024, 1024)
    glass = np.all(np.abs(overview.astype(int) - slide.GLASS_GREY) <= 6, axis=2)
    assert glass.mean() == pytest.approx(1 - slide.TISSUE_FRACTION, abs=0.05)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_svs and tif.pages[0].is_tiled and tif.pages[0].compression == tifffile.COMPRESSION.JPEG
        assert tif.pages[0].tilewidth == slide.TILE_PX
    with openslide.OpenSlide(path) as other:
        assert other.properties["openslide.vendor"] == "aperio"
        assert float(other.properties["openslide.mpp-x"]) == 0.25
        assert other.level_dimensions == ((4096, 4096), (1024, 1024))


def test_slide_is_cached_by_its_parameters(small_run):
    result, _, workdir = small_run
    assert not result["slide"]["cached"] and result["slide"]["write_s"] > 0
    path = slide.slide_path(workdir, SIZE, 0)
    stamp = path.stat().st_mtime_ns
    assert slide.write_slide(workdir, size=SIZE, seed=0) == path
    assert path.stat().st_mtime_ns == stamp
    assert slide.slide_path(workdir, SIZE, 1) != path


def test_section_covers_the_planned_share():
    section = slide._Section(SIZE)
    tissue = 0
    for top in range(0, SIZE, slide.TILE_PX):
        for left in range(0, SIZE, slide.TILE_PX):
            inside = section.inside(top, left)
            tissue += slide.TILE_PX ** 2 if inside is True else 0 if inside is False else int(inside.sum())
    assert tissue / SIZE ** 2 == pytest.approx(slide.TISSUE_FRACTION, abs=0.005)


def test_level_sides():
    assert slide.level_sides(32768) == [32768, 8192, 2048, 512]
    assert slide.level_sides(4096) == [4096, 1024]
    with pytest.raises(ValueError, match="multiple of 512"):
        slide.write_slide("unused", size=4000)


def test_makespan_and_projection():
    assert slide.makespan([4, 3, 3, 2, 2, 2], 2) == 8
    assert slide.makespan([5, 1], 8) == 5
    timings = {"slide_info": {"total_s": 1.0, "seconds": [1.0]},
               "measure_chunk": {"total_s": 12.0, "seconds": [3.0, 3.0, 3.0, 3.0]}}
    assert slide.modelled_wall(timings, cores=2, chunk_threads=2) == 13.0
    assert slide.modelled_wall(timings, cores=8, chunk_threads=2) == 4.0


def test_rule_threads_from_snakemake_log():
    log = ("localrule validate_inputs:\n    jobid: 4\n    resources: mem_mb=1000\n"
           "[Sun Dec  6 22:59:31 2026]\nlocalrule measure_chunk:\n    jobid: 10\n    threads: 2\n"
           "localcheckpoint slide_info:\n    wildcards: slide=a\n")
    assert slide._rule_threads(log) == {"validate_inputs": 1, "measure_chunk": 2, "slide_info": 1}


def test_needs_a_source_checkout(tmp_path, monkeypatch, capsys):
    with pytest.raises(speed.NeedsSourceCheckout, match="Snakefile is missing"):
        slide.find_snakefile(tmp_path / "Snakefile")
    monkeypatch.setattr(slide, "_SNAKEFILE", tmp_path / "Snakefile")
    assert cli.main(["bench", "slide", "--size", str(SIZE), "--workdir", str(tmp_path)]) == 2
    assert "source checkout" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing generated
