"""Tests of the OpenSlide and slideio readers (cxcr4score.vendor_readers) and of how open_slide
chooses a reader: the same SVS through every reader, a format only OpenSlide reads (Hamamatsu
VMS, built here from JPEGs), transparency, fractional pyramid levels, and the error that lists
the readers tried."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tifffile

from cxcr4score import grid as grid_module
from cxcr4score import sheets
from cxcr4score.errors import InputError
from cxcr4score.pipeline import validate_slide
from cxcr4score.slide_reader import open_slide
from cxcr4score.vendor_readers import OpenSlideReader, SlideioReader

from .real_data import WSI, needs_wsi

#: Most a JPEG pixel may differ between two decoders (libjpeg versions; measured 0 here, where
#: tifffile's imagecodecs, openslide-bin and slideio all decode with libjpeg-turbo).
_JPEG_DECODER_TOLERANCE = 2


def _whole_grid(reader, grid):
    return grid_module.read_box(reader, grid, (0, 0, *grid.shape))


@needs_wsi
@pytest.mark.parametrize("name", ["cmu_small_region.svs", "small.svs"])
@pytest.mark.parametrize("analysis_mpp", [0.5, 1.0])  # level 0 as it is; area-averaged 2 x 2
def test_svs_through_openslide_and_slideio_equals_tifffile_at_the_analysis_grid(name, analysis_mpp):
    with open_slide(WSI / name) as tiff, OpenSlideReader(WSI / name) as osl, \
            SlideioReader(WSI / name, driver="SVS") as sio:
        assert tiff.reader == "tifffile"
        grid = grid_module.choose_grid(tiff.levels, native_mpp=tiff.mpp, analysis_mpp=analysis_mpp)
        # the exact read: OpenSlide and slideio have no half-scale JPEG decode (tests/test_jpeg_half.py)
        expected = grid_module.read_box(tiff, grid, (0, 0, *grid.shape), reduced_decode=False)
        for reader, source in ((osl, "openslide"), (sio, "slideio")):
            assert reader.levels == tiff.levels
            assert (reader.mpp, reader.mpp_source) == (pytest.approx(tiff.mpp), source)
            assert grid_module.choose_grid(reader.levels, native_mpp=reader.mpp, analysis_mpp=analysis_mpp) == grid
            got = _whole_grid(reader, grid)
            assert got.shape == expected.shape == (*grid.shape, 3)
            difference = np.abs(got.astype(int) - expected)
            assert difference.max() <= _JPEG_DECODER_TOLERANCE and difference.mean() < 0.05, (reader, difference.max())
            rows, cols = grid.shape  # a box equals the same crop of the whole grid
            top, left, bottom, right = box = (rows // 3, cols // 4, rows - 1, cols // 2 + 1)
            np.testing.assert_array_equal(grid_module.read_box(reader, grid, box), got[top:bottom, left:right])


def _write_vms(folder, rgb, *, nm_per_px=500):
    """A Hamamatsu VMS slide: a ``.vms`` index, the image as a JPEG with restart markers (4:4:4,
    which OpenSlide's VMS reader needs here) and a quarter-size map JPEG. Returns the index."""
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_RST_INTERVAL, 8,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    rows, cols = rgb.shape[:2]
    assert cv2.imwrite(str(folder / "s.jpg"), rgb[..., ::-1], params)
    small = cv2.resize(rgb, (cols // 4, rows // 4), interpolation=cv2.INTER_AREA)
    assert cv2.imwrite(str(folder / "s_map.jpg"), small[..., ::-1], params)
    index = folder / "s.vms"
    index.write_text("[Virtual Microscope Specimen]\nNoLayers=1\nNoJpegColumns=1\nNoJpegRows=1\n"
                     f"ImageFile=s.jpg\nMapFile=s_map.jpg\nPhysicalWidth={cols * nm_per_px}\n"
                     f"PhysicalHeight={rows * nm_per_px}\nSourceLens=20\n")
    return index


def test_vms_only_openslide_reads_pixels_pixel_size_and_levels(tmp_path):
    rgb = np.full((512, 768, 3), 235, np.uint8)
    rgb[100:300, 200:600] = (120, 80, 160)
    rgb[::7, ::5] = (90, 60, 30)
    index = _write_vms(tmp_path / "P1", rgb)
    decoded = cv2.imread(str(tmp_path / "P1" / "s.jpg"))[..., ::-1]
    with open_slide(index) as slide:
        assert (slide.reader, slide.format) == ("OpenSlide", "hamamatsu")
        assert (slide.mpp, slide.mpp_source) == (pytest.approx(0.5), "openslide")
        assert [level.shape for level in slide.levels][:3] == [(512, 768), (256, 384), (128, 192)]
        whole = slide.read_region(0, 0, 0, 512, 768)
        assert np.abs(whole.astype(int) - decoded).max() <= _JPEG_DECODER_TOLERANCE
        level1 = slide.read_region(1, 0, 0, 256, 384)  # a region of level 1 is that level's own pixels
        np.testing.assert_array_equal(slide.read_region(1, 37, 51, 100, 90), level1[37:137, 51:141])
        grid = grid_module.choose_grid(slide.levels, native_mpp=slide.mpp, analysis_mpp=1.0)
        assert (grid.level, grid.shape) == (1, (256, 384))
    info, problems = validate_slide(index)
    assert problems == [] and info == {"width": 768, "height": 512, "mpp": pytest.approx(0.5),
                                       "mpp_source": "openslide", "format": "hamamatsu"}
    assert sheets.slides_from_folder(tmp_path)["slide_id"].tolist() == ["P1__s"]  # its JPEGs are not slides


def test_openslide_transparent_pixels_become_white_glass(tmp_path):
    import openslide

    rgba = np.zeros((128, 192, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, 96:, 3] = 255  # left half transparent
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, rgba, photometric="rgb", tile=(64, 64), extrasamples=["unassalpha"], compression="zlib")
    with openslide.OpenSlide(str(path)) as raw:
        assert (np.asarray(raw.read_region((0, 0), 0, (192, 128)))[:, :96] == 0).all()  # (0, 0, 0, 0)
    with OpenSlideReader(path) as slide:
        got = slide.read_region(0, -4, 0, 136, 192)
    assert (got[:4] == 255).all() and (got[132:] == 255).all() and (got[4:132, :96] == 255).all()
    assert (got[4:132, 96:] == (200, 100, 50)).all()


@needs_wsi
def test_openslide_levels_at_fractional_downsamples_are_not_offered():
    """boxes.tiff: OpenSlide downsamples 1, 2, 4.016, 8.086; at the last two it would resample.
    Its 72 dpi resolution tags, which OpenSlide gives as 352.8 um/px, are not a pixel size."""
    with OpenSlideReader(WSI / "boxes.tiff") as osl, open_slide(WSI / "boxes.tiff") as tiff:
        assert [level.shape for level in osl.levels] == [(250, 300), (125, 150)]
        assert osl.levels == tiff.levels[:2]
        assert (osl.mpp, osl.mpp_source) == (None, None)
        for level, (rows, cols) in enumerate(lv.shape for lv in osl.levels):
            np.testing.assert_array_equal(osl.read_region(level, -3, 7, rows, cols),
                                          tiff.read_region(level, -3, 7, rows, cols))


@needs_wsi
def test_a_file_no_reader_opens_lists_the_readers_tried(tmp_path):
    path = WSI / "unopenable.tiff"
    with pytest.raises(InputError) as caught:
        open_slide(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: cannot read the image (tried tifffile: ValueError: ")
    assert "COMPRESSION; OpenSlide: OpenSlideError: Unsupported TIFF compression: 52479)" in problem
    assert "\n" not in problem and "Traceback" not in problem
    assert validate_slide(path)[1] == [problem]
    for name, reader in (("x.mrxs", "OpenSlide"), ("x.vsi", "slideio"), ("x.svs", "tifffile")):
        (tmp_path / name).write_bytes(b"not a slide")
        with pytest.raises(InputError) as caught:
            open_slide(tmp_path / name)
        (problem,) = caught.value.problems
        assert problem.startswith(f"{tmp_path / name}: cannot read the image (tried {reader}: ")
        assert "\n" not in problem


@needs_wsi
def test_unreadable_svs_opens_with_tifffile_and_fails_on_read_naming_the_file():
    """Its tile is corrupt: tifffile opens it (so it is the reader) and the read fails; OpenSlide
    fails on the same tile."""
    path = WSI / "unreadable.svs"
    for opener in (open_slide, OpenSlideReader):
        with opener(path) as slide:
            with pytest.raises(InputError) as caught:
                slide.read_region(0, 0, 0, 16, 16)
        (problem,) = caught.value.problems
        assert problem.startswith(f"{path}: cannot read the image (") and "Bogus marker" in problem
        assert "\n" not in problem
    _, problems = validate_slide(path)
    assert len(problems) == 1 and "Bogus marker" in problems[0]
