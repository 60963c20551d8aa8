"""Analysis grid: level choice, area averaging, regions and the overview (DESIGN section 3)."""

import numpy as np
import pytest
import tifffile

from cxcr4score import grid
from cxcr4score.slide_reader import Level, open_slide


def _pyramid(path, base, mpp, factors=(1, 4, 16)):
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, photometric="rgb", tile=(64, 64), subifds=len(factors) - 1,
                  resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
        for f in factors[1:]:
            tif.write(np.ascontiguousarray(base[::f, ::f]), photometric="rgb", tile=(64, 64), subfiletype=1)
    return path


@pytest.fixture
def base():
    return np.random.default_rng(0).integers(0, 256, size=(512, 640, 3), dtype=np.uint8)


def test_coarsest_level_fine_enough_is_chosen():
    """0.125 um level 0 with 4x and 16x levels: the 4x level (0.5 um) is read as it is."""
    levels = (Level((4000, 4000), 1.0), Level((1000, 1000), 4.0), Level((250, 250), 16.0))
    g = grid.choose_grid(levels, native_mpp=0.125, analysis_mpp=0.5)
    assert (g.level, g.mpp, g.shape, g.level_per_analysis) == (1, 0.5, (1000, 1000), 1.0)
    g = grid.choose_grid(levels, native_mpp=0.1, analysis_mpp=0.5)  # 4x is 0.4 um: averaged to 0.5
    assert g.level == 1 and g.shape == (800, 800) and g.mpp == pytest.approx(0.5)


def test_output_size_and_effective_mpp():
    """Reference: hand-worked round(shape * mpp / 0.5) and the mpp that size implies."""
    g = grid.choose_grid((Level((2202, 1000), 1.0),), native_mpp=0.227, analysis_mpp=0.5)
    assert g.shape == (1000, 454)  # round(2202 * 0.454), round(1000 * 0.454)
    assert g.mpp == pytest.approx((0.227 * 2202 / 1000 + 0.227 * 1000 / 454) / 2)


@pytest.mark.parametrize("mpp", [0.48, 0.5, 0.52, 1.0])
def test_close_or_coarser_images_are_used_as_they_are(mpp):
    g = grid.choose_grid((Level((300, 200), 1.0),), native_mpp=mpp, analysis_mpp=0.5)
    assert g.shape == (300, 200) and g.mpp == mpp and g.level_per_analysis == 1.0


def test_read_box_area_averages(tmp_path):
    """Reference: every 2x2 block holds one 200 and three 0s -> 50 after area averaging."""
    rgb = np.zeros((64, 96, 3), np.uint8)
    rgb[0::2, 0::2] = 200
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    with open_slide(path) as reader:
        g = grid.choose_grid(reader.levels, native_mpp=reader.mpp, analysis_mpp=0.5)
        assert g.shape == (32, 48)
        assert (grid.read_box(reader, g, (0, 0, 32, 48)) == 50).all()
        assert (grid.read_box(reader, g, (4, 8, 12, 20)) == 50).all()


def test_read_box_on_a_pyramid_level_equals_the_level(tmp_path, base):
    path = _pyramid(tmp_path / "p.tif", base, mpp=0.125)
    with open_slide(path) as reader:
        g = grid.choose_grid(reader.levels, native_mpp=reader.mpp, analysis_mpp=0.5)
        assert g.level == 1
        np.testing.assert_array_equal(grid.read_box(reader, g, (10, 20, 60, 90)), base[::4, ::4][10:60, 20:90])


def test_overview_is_bounded_and_uses_a_coarse_level(tmp_path, base):
    path = _pyramid(tmp_path / "p.tif", base, mpp=0.5)
    with open_slide(path) as reader:
        g = grid.choose_grid(reader.levels, native_mpp=reader.mpp, analysis_mpp=0.5)
        small, small_mpp = grid.read_overview(reader, g)  # fits: the analysis image itself
        np.testing.assert_array_equal(small, base)
        assert small_mpp == 0.5
        overview, mpp = grid.read_overview(reader, g, max_px=100)
    assert max(overview.shape[:2]) <= 101 and mpp == pytest.approx(0.5 * 640 / overview.shape[1])
    # built from the 4x level (2 um), area-averaged: close to averaging the base in 6.4 um blocks
    assert abs(float(overview.mean()) - float(base.mean())) < 2
