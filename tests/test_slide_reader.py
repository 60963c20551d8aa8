"""Tests of cxcr4score.slide_reader: regions of pyramid levels, against slicing what was
written and against tifffile's zarr store."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from cxcr4score import images, slide_reader
from cxcr4score.errors import InputError

from .real_data import WSI, needs_wsi, write_tiff
from .threads import THREAD_COUNTS, numba_threads


def _pyramid(seed=1, shape=(300, 400), n_levels=3, channels=3):
    """Independent random pixels per level (so a level read from the wrong place shows)."""
    rng = np.random.default_rng(seed)
    levels = []
    for i in range(n_levels):
        rows, cols = shape[0] >> i, shape[1] >> i
        levels.append(rng.integers(0, 256, (rows, cols, channels), dtype=np.uint8))
    return levels


def _write_pyramid(path, levels, *, ome=False, tile=(64, 64), **kwargs):
    """A tiled pyramid with the reduced levels in SubIFDs of level 0 (as QuPath and bfconvert)."""
    options = {"tile": tile, "photometric": "rgb", "compression": "zlib", **kwargs}
    with tifffile.TiffWriter(path, ome=ome) as tif:
        tif.write(levels[0], subifds=len(levels) - 1, **options,
                  metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25} if ome else None)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, **options)
    return path


# region cases: inside, touching tile edges, partly outside on every side, wholly outside, empty
_REGIONS = [(0, 0, 64, 64), (10, 70, 100, 130), (-5, -7, 20, 30), (250, 350, 100, 100),
            (-10, 0, 500, 500), (1000, 1000, 8, 8), (5, 5, 0, 9), (5, 5, 9, 0)]


def _expected_region(pixels, top, left, height, width):
    """Reference: pad the whole array with white, then slice."""
    pad = max(abs(top), abs(left), height, width) + max(pixels.shape)
    padded = np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), constant_values=255)
    return padded[pad + top:pad + top + height, pad + left:pad + left + width]


@pytest.mark.parametrize("ome", [True, False])
def test_read_region_every_level_equals_slicing_what_was_written(tmp_path, ome):
    levels = _pyramid()
    path = _write_pyramid(tmp_path / ("p.ome.tif" if ome else "p.tif"), levels, ome=ome)
    with slide_reader.open_slide(path) as slide:
        assert slide.path == path
        assert [level.shape for level in slide.levels] == [(300, 400), (150, 200), (75, 100)]
        assert [level.downsample for level in slide.levels] == [1.0, 2.0, 4.0]
        assert (slide.mpp, slide.mpp_source) == ((pytest.approx(0.25), "ome") if ome else (None, None))
        for index, pixels in enumerate(levels):
            whole = slide.read_region(index, 0, 0, *pixels.shape[:2])
            np.testing.assert_array_equal(whole, pixels)
            for region in _REGIONS:
                got = slide.read_region(index, *region)
                assert got.dtype == np.uint8 and got.flags.c_contiguous
                assert got.shape == (region[2], region[3], 3)
                np.testing.assert_array_equal(got, _expected_region(pixels, *region))
    np.testing.assert_array_equal(images.read_image(path).rgb, levels[0])


def test_downsample_is_the_mean_shape_ratio_of_both_axes(tmp_path):
    levels = [np.zeros((250, 300, 3), np.uint8), np.zeros((62, 75, 3), np.uint8)]
    with slide_reader.open_slide(_write_pyramid(tmp_path / "a.tif", levels, tile=(16, 16))) as slide:
        assert slide.levels == (slide_reader.Level((250, 300), 1.0), slide_reader.Level((62, 75), (250 / 62 + 4) / 2))


def test_read_region_planar_and_rgba_tiffs(tmp_path):
    levels = _pyramid(seed=2, shape=(130, 140), n_levels=2)
    planar = [np.ascontiguousarray(np.moveaxis(level, 2, 0)) for level in levels]
    path = _write_pyramid(tmp_path / "planar.tif", planar, planarconfig="separate", tile=(32, 32))
    with slide_reader.open_slide(path) as slide:
        for index, pixels in enumerate(levels):
            np.testing.assert_array_equal(slide.read_region(index, -3, 20, 50, 70),
                                          _expected_region(pixels, -3, 20, 50, 70))
    rgba = _pyramid(seed=3, shape=(64, 96), n_levels=2, channels=4)
    for level in rgba:
        level[:, : level.shape[1] // 2, 3] = 0  # left half transparent
        level[:, level.shape[1] // 2:, 3] = 255
    path = _write_pyramid(tmp_path / "rgba.tif", rgba, tile=(16, 16), extrasamples=["unassalpha"])
    with slide_reader.open_slide(path) as slide:
        for index, pixels in enumerate(rgba):
            rows, cols = pixels.shape[:2]
            got = slide.read_region(index, 0, 0, rows, cols)
            assert got.shape == (rows, cols, 3) and (got[:, : cols // 2] == 255).all()
            np.testing.assert_array_equal(got[:, cols // 2:], pixels[:, cols // 2:, :3])


def test_stripped_single_level_tiff(tmp_path, rgb):
    path = write_tiff(tmp_path / "a.tif", rgb, photometric="rgb", rowsperstrip=3)
    with slide_reader.open_slide(path) as slide:
        assert slide.levels == (slide_reader.Level((20, 30), 1.0),)
        np.testing.assert_array_equal(slide.read_region(0, 4, 5, 30, 10), _expected_region(rgb, 4, 5, 30, 10))


def test_only_the_touched_tiles_are_decoded(tmp_path):
    """A 4096 x 4096 slide whose tiles are all corrupt except one still reads that tile."""
    pixels = np.zeros((4096, 4096, 3), np.uint8)
    good = np.random.default_rng(4).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    pixels[256:512, 512:768] = good
    path = write_tiff(tmp_path / "big.tif", pixels, photometric="rgb", tile=(256, 256),
                       compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        keep = 1 * (4096 // 256) + 2  # tile row 1, tile column 2
        spans = [(o, n) for i, (o, n) in enumerate(zip(page.dataoffsets, page.databytecounts)) if i != keep]
    with open(path, "r+b") as handle:
        for offset, count in spans:
            handle.seek(offset)
            handle.write(b"\xff" * count)
    with slide_reader.open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_region(0, 256, 512, 256, 256), good)
        np.testing.assert_array_equal(slide.read_region(0, 300, 600, 16, 16), good[44:60, 88:104])
        with pytest.raises(InputError) as caught:  # a corrupt tile fails when it is read
            slide.read_region(0, 0, 0, 256, 256)
    (problem,) = caught.value.problems
    assert problem.startswith(str(path)) and "cannot read the image" in problem and "\n" not in problem


def test_png_is_one_level_and_sliced(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png", dpi=(25400 / 0.5, 25400 / 0.5))
    with slide_reader.open_slide(tmp_path / "a.png") as slide:
        assert slide.levels == (slide_reader.Level((20, 30), 1.0),)
        assert (slide.mpp, slide.mpp_source) == (pytest.approx(0.5, rel=1e-5), "png")
        for region in [(0, 0, 20, 30), (-2, 25, 10, 10), (3, 4, 5, 6), (30, 0, 4, 4)]:
            np.testing.assert_array_equal(slide.read_region(0, *region), _expected_region(rgb, *region))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((1, 0, 0, 4, 4), ["level must be in 0..0", "level=1"]),
        ((-1, 0, 0, 4, 4), ["level=-1"]),
        ((0, 0, 0, -1, 4), ["must not be negative", "height=-1"]),
        ((0, 0, 0, 4, -2), ["must not be negative", "width=-2"]),
        ((0, 0.5, 0, 4, 4), ["integers", "top=0.5"]),
    ],
)
def test_read_region_validates_arguments(tmp_path, rgb, args, words):
    with slide_reader.open_slide(write_tiff(tmp_path / "a.tif", rgb, photometric="rgb")) as slide:
        with pytest.raises(ValueError) as caught:
            slide.read_region(*args)
    for word in words:
        assert word in str(caught.value)


def test_closed_reader_and_pickling(tmp_path, rgb):
    import pickle

    slide = slide_reader.open_slide(write_tiff(tmp_path / "a.tif", rgb, photometric="rgb"))
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(slide)
    slide.read_region(0, 0, 0, 2, 2)
    slide.close()
    slide.close()  # repeating is harmless
    with pytest.raises(ValueError, match="closed"):
        slide.read_region(0, 0, 0, 2, 2)


@pytest.mark.parametrize(
    ("name", "make", "words"),
    [
        ("gray.tif", lambda p: tifffile.imwrite(p, np.zeros((8, 9), np.uint8)), ["grayscale"]),
        ("noise.tif", lambda p: p.write_bytes(b"II*\x00" + bytes(range(256)) * 4),
         ["cannot read the image"]),
        ("x.bmp", lambda p: p.write_bytes(b"BM"), ["unsupported image type"]),
        ("missing.tif", lambda p: None, ["file not found"]),
    ],
)
def test_open_slide_bad_files_give_one_plain_line(tmp_path, name, make, words):
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError) as caught:
        slide_reader.open_slide(path)
    (problem,) = caught.value.problems
    assert problem.startswith(str(path)) and "\n" not in problem
    for word in words:
        assert word in problem


@needs_wsi
def test_real_pyramid_levels():
    with slide_reader.open_slide(WSI / "boxes.tiff") as slide:
        assert [level.shape for level in slide.levels] == [(250, 300), (125, 150), (62, 75), (31, 37)]
        assert [level.downsample for level in slide.levels] == pytest.approx(
            [1.0, 2.0, (250 / 62 + 300 / 75) / 2, (250 / 31 + 300 / 37) / 2])
        with tifffile.TiffFile(WSI / "boxes.tiff") as tif:
            level2 = tif.series[0].levels[2].asarray()
        np.testing.assert_array_equal(slide.read_region(2, 10, 20, 40, 50), level2[10:50, 20:70])


@needs_wsi
def test_real_svs_region_matches_read_image_and_skips_associated_images():
    full = images.read_image(WSI / "cmu_small_region.svs").rgb
    with slide_reader.open_slide(WSI / "cmu_small_region.svs") as slide:
        assert slide.levels == (slide_reader.Level((2967, 2220), 1.0),)  # thumbnail, label, macro are not levels
        assert (slide.mpp, slide.mpp_source) == (pytest.approx(0.499), "svs")
        np.testing.assert_array_equal(slide.read_region(0, 1000, 700, 300, 500), full[1000:1300, 700:1200])
        edge = slide.read_region(0, 2900, 2100, 100, 200)
        np.testing.assert_array_equal(edge[:67, :120], full[2900:, 2100:])
        assert (edge[67:] == 255).all() and (edge[:, 120:] == 255).all()


@needs_wsi
def test_real_ome_pixel_size_via_open_slide():
    with slide_reader.open_slide(WSI / "OS-2-ndpi.ome.tif") as slide:
        assert (slide.mpp, slide.mpp_source) == (pytest.approx(0.2271, abs=1e-4), "ome")
        assert slide.levels == (slide_reader.Level((2202, 2202), 1.0),)


@needs_wsi
@pytest.mark.parametrize(("name", "message"), [("unopenable.tiff", "COMPRESSION"),
                                               ("unreadable.svs", "Bogus marker")])
def test_real_broken_slides_via_open_slide(name, message):
    with pytest.raises(InputError) as caught:
        with slide_reader.open_slide(WSI / name) as slide:
            slide.read_region(0, 0, 0, 16, 16)
    (problem,) = caught.value.problems
    assert problem.startswith(str(WSI / name)) and message in problem and "\n" not in problem


def _segment_cases(tmp_path):
    """JPEG tiles (the synthetic writer), JPEG tiles with shared tables (SVS), sparse tiles."""
    from cxcr4score import synthetic

    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(150.0, 170.0)), seed=1)
    yield synthetic.write_tile(tile, tmp_path / "jpeg.tif", jpeg_quality=90)
    svs = WSI / "cmu_small_region.svs"
    if svs.is_file():
        yield svs
    pixels = np.random.default_rng(5).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    tiles = (None if (r, c) == (1, 1) else pixels[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32]
             for r in range(3) for c in range(4))  # tile row 1, column 1 missing
    sparse = tmp_path / "sparse.tif"
    tifffile.imwrite(sparse, tiles, shape=pixels.shape, dtype=np.uint8, photometric="rgb", tile=(32, 32),
                     compression="zlib")
    yield sparse


def test_segment_decoder_equals_the_zarr_store(tmp_path):
    """Reference: the same levels read through tifffile's zarr store; 1 and 2 decoding threads."""
    for path in _segment_cases(tmp_path):
        with slide_reader.open_slide(path) as slide:
            for level, (rows, cols) in enumerate(lv.shape for lv in slide.levels):
                assert slide._segment_layouts[level] is not None, path
                for top, left, height, width in [(0, 0, rows, cols), (7, 33, rows // 2, cols // 3),
                                                 (-9, cols - 20, 40, 50), (rows - 1, 0, 1, cols)]:
                    whole = slide._read_tiff_pixels(level, 0, rows, 0, cols)
                    expected = _expected_region(whole, top, left, height, width)
                    for threads in THREAD_COUNTS:
                        with numba_threads(threads):
                            region = slide.read_region(level, top, left, height, width)
                        np.testing.assert_array_equal(region, expected)
        if path.name == "sparse.tif":
            with tifffile.TiffFile(path) as tif:
                nodata = tif.pages[0].nodata
            with slide_reader.open_slide(path) as slide:
                assert (slide.read_region(0, 32, 32, 32, 32) == nodata).all()


def test_planar_and_rgba_levels_use_the_zarr_store(tmp_path):
    planar = _write_pyramid(tmp_path / "planar.tif", [np.zeros((3, 40, 40), np.uint8)], planarconfig="separate",
                            tile=(16, 16))
    rgba = _write_pyramid(tmp_path / "rgba.tif", [np.zeros((40, 40, 4), np.uint8)], tile=(16, 16),
                          extrasamples=["unassalpha"])
    for path in (planar, rgba):
        with slide_reader.open_slide(path) as slide:
            assert slide._segment_layouts == [None]
