"""Reading 40x JPEG slides at half resolution (issue 22): the half-scale JPEG decode against the
exact 2 x 2 area average of tifffile's full decode, its colour handling, where it falls back to
the exact path, and the analysis grid read through it (DESIGN section 3)."""

from __future__ import annotations

import struct

import imagecodecs
import numpy as np
import pytest
import tifffile

from cxcr4score import grid, jpeg_half, slide_reader, synthetic
from cxcr4score.errors import InputError

from .real_data import WSI, needs_wsi
from .threads import THREAD_COUNTS, numba_threads

#: Documented tolerance of the half-scale decode against the exact 2 x 2 mean of the full decode
#: (docs/performance.md): mean absolute difference per channel, and mean signed difference
#: (a colour shift), in grey levels.
MEAN_ABS, BIAS = 1.0, 0.25


@pytest.fixture(scope="module")
def tissue():
    """A generated 2048 x 2048 px field at 0.25 um/px (a 40x scan)."""
    return synthetic.generate_tile(synthetic.TileSpec(size_um=(512.0, 512.0), mpp=0.25), seed=3).rgb


def _jpeg_pyramid(path, rgb, *, tile=(256, 256), mpp=0.25, factors=(1, 4, 16)):
    """A JPEG pyramid as a scanner writes it: YCbCr 4:2:0 with a JFIF marker (tifffile's JPEG
    for photometric RGB), reduced levels by 4 (so level 0 is read for a 0.5 um grid)."""
    with tifffile.TiffWriter(path) as tif:
        for i, f in enumerate(factors):
            tif.write(np.ascontiguousarray(rgb[::f, ::f]), photometric="rgb", tile=tile, compression="jpeg",
                      compressionargs={"level": 90}, subifds=len(factors) - 1 if i == 0 else None,
                      subfiletype=1 if i else 0, resolution=(1e4 / (mpp * f),) * 2, resolutionunit="CENTIMETER")
    return path


def _segments(stream):
    """Marker segments of a JPEG stream up to SOS: (marker, whole segment bytes), then the rest."""
    position, segments = 2, []
    while stream[position + 1] != 0xDA:
        (length,) = struct.unpack_from(">H", stream, position + 2)
        segments.append((stream[position + 1], stream[position:position + 2 + length]))
        position += 2 + length
    return segments, stream[position:]


def _aperio_tiles(rgb, tile):
    """RGB-coded JPEG tiles as Aperio writes them: no JFIF or Adobe marker, component ids 0, 1, 2,
    quantisation and Huffman tables in the page's JPEGTables; returns (tiles, tables)."""
    tiles, tables = [], None
    for top in range(0, rgb.shape[0], tile):
        for left in range(0, rgb.shape[1], tile):
            block = np.zeros((tile, tile, 3), np.uint8)
            part = rgb[top:top + tile, left:left + tile]
            block[:part.shape[0], :part.shape[1]] = part
            stream = imagecodecs.jpeg8_encode(block, level=90, colorspace="RGB", outcolorspace="RGB",
                                              subsampling="444", optimize=False)
            segments, scan = _segments(stream)
            kept = b"".join(s for m, s in segments if m in (0xC0, 0xC1))
            ids = {bytes([c]) for c in b"RGB"}
            kept, scan = (bytearray(kept), bytearray(scan))
            for k in range(3):  # SOF components at 10 + 3k, SOS selectors at 5 + 2k
                assert bytes([kept[10 + 3 * k]]) in ids and bytes([scan[5 + 2 * k]]) in ids
                kept[10 + 3 * k] = scan[5 + 2 * k] = k
            tables = b"\xff\xd8" + b"".join(s for m, s in segments if m in (0xDB, 0xC4)) + b"\xff\xd9"
            tiles.append(b"\xff\xd8" + bytes(kept) + bytes(scan))
    return tiles, tables


def _aperio_like(path, rgb, tile=256):
    tiles, tables = _aperio_tiles(rgb, tile)
    tifffile.imwrite(path, iter(tiles), shape=rgb.shape, dtype=np.uint8, photometric="rgb", tile=(tile, tile),
                     compression="jpeg", compressionargs={"outcolorspace": "RGB"}, jpegtables=tables,
                     resolution=(1e4 / 0.25,) * 2, resolutionunit="CENTIMETER")
    return path


def _differences(got, exact):
    diff = got.astype(np.int64) - exact
    return np.abs(diff).mean(axis=(0, 1)), diff.mean(axis=(0, 1))


def _check_close(got, exact):
    mean_abs, bias = _differences(got, exact)
    assert (mean_abs < MEAN_ABS).all() and (np.abs(bias) < BIAS).all(), (mean_abs, bias)


def test_half_plane_is_close_to_the_exact_2x2_mean(tmp_path, tissue):
    """Reference: tifffile's full decode (the exact path) averaged in 2 x 2 blocks; YCbCr 4:2:0
    with JFIF, and Aperio's RGB-coded JPEG with shared tables and no marker."""
    for path in (_jpeg_pyramid(tmp_path / "ycbcr.tif", tissue[:1024, :1280], factors=(1,)),
                 _aperio_like(tmp_path / "aperio.tif", tissue[:1024, :1280])):
        with slide_reader.open_slide(path) as slide:
            assert slide.half_shape(0) == (512, 640)
            exact = jpeg_half.half_mean(slide.read_region(0, 0, 0, 1024, 1280))
            half = slide.read_region_half(0, 0, 0, 512, 640)
        assert half.dtype == np.uint8 and half.flags.c_contiguous
        _check_close(half, exact)
        assert not (half == exact).all()  # the DCT-domain decode was used


def test_rgb_coded_jpeg_is_not_taken_for_ycbcr(tmp_path, tissue):
    """Without the Adobe marker the decoder converts R, G, B as if YCbCr: green moves by about 100."""
    path = _aperio_like(tmp_path / "aperio.tif", tissue[:512, :512])
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.photometric == 2 and not page.is_jfif
        tif.filehandle.seek(page.dataoffsets[0])
        data = tif.filehandle.read(page.databytecounts[0])
        exact = jpeg_half.half_mean(page.decode(data, 0, jpegtables=page.jpegtables)[0][0])
        right = jpeg_half.decode_half(jpeg_half.jpeg_stream(data, page.jpegtables, rgb_coded=True), (256, 256))
        wrong = jpeg_half.decode_half(jpeg_half.jpeg_stream(data, page.jpegtables, rgb_coded=False), (256, 256))
    _check_close(right, exact)
    assert np.abs(_differences(wrong, exact)[1]).max() > 20


def test_adobe_marker_goes_after_the_tile_own_markers():
    stream = imagecodecs.jpeg8_encode(np.zeros((16, 16, 3), np.uint8), level=90)  # JFIF APP0 first
    marked = jpeg_half.jpeg_stream(stream, None, rgb_coded=True)
    segments, scan = _segments(marked)
    assert segments[-1][1].startswith(b"\xff\xee\x00\x0eAdobe") and segments[-1][1][-1] == 0  # transform 0
    assert marked == stream[:len(marked) - len(scan) - 16] + segments[-1][1] + scan
    assert jpeg_half.jpeg_stream(stream, None, rgb_coded=False) == stream
    assert jpeg_half.jpeg_stream(b"\x00\x01", None, rgb_coded=True) is None  # decoded exactly instead


@needs_wsi
def test_real_svs_half_plane():
    """Aperio SVS: RGB-coded JPEG, shared tables, 240 px tiles, 2967 x 2220 px: the last tile row
    holds 87 rows (odd: decoded exactly), the last tile column 60 columns (half scale)."""
    with slide_reader.open_slide(WSI / "cmu_small_region.svs") as slide:
        assert slide.half_shape(0) == (1484, 1110)
        exact = jpeg_half.half_mean(slide.read_region(0, 0, 0, 2967, 2220))
        half = slide.read_region_half(0, 0, 0, 1484, 1110)
    _check_close(half, exact)
    np.testing.assert_array_equal(half[1440:], exact[1440:])
    _check_close(half[:1440, 1080:], exact[:1440, 1080:])


def test_half_mean_of_odd_edges():
    """Reference: hand-worked means; ties round to even, as the area-average kernel."""
    pixels = np.array([[1, 2, 9], [3, 5, 7], [4, 4, 0]], np.uint8)[..., None].repeat(3, axis=2)
    expected = np.array([[3, 8], [4, 0]], np.uint8)  # 11 / 4 = 2.75; 16 / 2; 8 / 2; 0
    np.testing.assert_array_equal(jpeg_half.half_mean(pixels)[..., 0], expected)
    ties = np.array([[1, 1], [0, 0]], np.uint8)[..., None].repeat(3, axis=2)  # 2 / 4 = 0.5 -> 0
    assert (jpeg_half.half_mean(ties) == 0).all() and (jpeg_half.half_mean(ties + 1) == 2).all()  # 1.5 -> 2


def test_odd_edge_tiles_are_averaged_exactly(tmp_path, tissue):
    """A 1001 x 1203 px level in 256 px tiles: its last tile row holds 233 rows and its last
    tile column 179 columns, so those tiles are decoded in full and averaged over the pixels
    inside (the last half pixel is the mean of one row or column)."""
    path = _jpeg_pyramid(tmp_path / "odd.tif", tissue[:1001, :1203], factors=(1,))
    with slide_reader.open_slide(path) as slide:
        assert slide.half_shape(0) == (501, 602)
        exact = jpeg_half.half_mean(slide.read_region(0, 0, 0, 1001, 1203))
        half = slide.read_region_half(0, 0, 0, 501, 602)
    np.testing.assert_array_equal(half[384:], exact[384:])
    np.testing.assert_array_equal(half[:, 512:], exact[:, 512:])
    _check_close(half[:384, :512], exact[:384, :512])


def test_read_region_half_equals_slicing_the_half_plane(tmp_path, tissue):
    """Any region, inside or partly outside (white), odd or even, equals the same slice of the
    whole half plane, at 1 and 2 decoding threads."""
    path = _jpeg_pyramid(tmp_path / "p.tif", tissue[:1001, :1203], factors=(1,))
    with slide_reader.open_slide(path) as slide:
        whole = slide.read_region_half(0, 0, 0, 501, 602)
        padded = np.pad(whole, ((600, 600), (600, 600), (0, 0)), constant_values=255)
        for top, left, height, width in [(0, 0, 128, 128), (127, 129, 3, 257), (-5, 590, 40, 30),
                                         (499, -3, 10, 20), (600, 700, 5, 5), (3, 3, 0, 4)]:
            for threads in THREAD_COUNTS:
                with numba_threads(threads):
                    got = slide.read_region_half(0, top, left, height, width)
                np.testing.assert_array_equal(got, padded[600 + top:600 + top + height, 600 + left:600 + left + width])


def test_decoder_refusal_falls_back_to_the_exact_mean(tmp_path, tissue, monkeypatch):
    path = _jpeg_pyramid(tmp_path / "p.tif", tissue[:512, :768], factors=(1,))
    monkeypatch.setattr(jpeg_half, "decode_half", lambda stream, shape: None)
    with slide_reader.open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_region_half(0, 0, 0, 256, 384),
                                      jpeg_half.half_mean(slide.read_region(0, 0, 0, 512, 768)))


def test_a_corrupt_tile_is_an_input_error(tmp_path, tissue):
    path = _jpeg_pyramid(tmp_path / "p.tif", tissue[:512, :512], factors=(1,))
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[3], tif.pages[0].databytecounts[3]
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * count)
    with slide_reader.open_slide(path) as slide:
        assert slide.read_region_half(0, 0, 0, 128, 128).shape == (128, 128, 3)  # tile 0 is intact
        with pytest.raises(InputError, match="cannot read the image"):
            slide.read_region_half(0, 128, 128, 128, 128)


def test_layouts_without_a_half_decode(tmp_path, tissue):
    """Deflate tiles, JPEG strips, and PNG: no half plane, and read_box reads exactly."""
    rgb = tissue[:256, :320]
    zlib = tmp_path / "zlib.tif"
    tifffile.imwrite(zlib, rgb, photometric="rgb", tile=(64, 64), compression="zlib", resolution=(4e4, 4e4),
                     resolutionunit="CENTIMETER")
    strips = tmp_path / "strips.tif"
    tifffile.imwrite(strips, rgb, photometric="rgb", rowsperstrip=16, compression="jpeg", resolution=(4e4, 4e4),
                     resolutionunit="CENTIMETER")
    for path in (zlib, strips):
        with slide_reader.open_slide(path) as slide:
            assert slide.half_shape(0) is None
            with pytest.raises(ValueError, match="half resolution"):
                slide.read_region_half(0, 0, 0, 4, 4)
            g = grid.choose_grid(slide.levels, native_mpp=0.25, analysis_mpp=0.5)
            level = slide.read_region(0, 0, 0, *slide.levels[0].shape)
            np.testing.assert_array_equal(grid.read_box(slide, g, (0, 0, *g.shape)), jpeg_half.half_mean(level))


def test_grid_of_a_40x_pyramid_through_the_half_plane(tmp_path, tissue):
    """A 2048 x 2048 px JPEG pyramid at 0.25 um/px with levels by 4: level 0 is read for the
    0.5 um grid. Reduced decode is within the documented tolerance of the exact area average
    and, like it, a box equals the same crop of the whole grid (odd and even origins)."""
    path = _jpeg_pyramid(tmp_path / "p.tif", tissue)
    with slide_reader.open_slide(path) as slide:
        g = grid.choose_grid(slide.levels, native_mpp=slide.mpp, analysis_mpp=0.5)
        assert (g.level, g.shape, g.level_per_analysis) == (0, (1024, 1024), 2.0)
        reduced = grid.read_box(slide, g, (0, 0, 1024, 1024))
        exact = grid.read_box(slide, g, (0, 0, 1024, 1024), reduced_decode=False)
        np.testing.assert_array_equal(exact, jpeg_half.half_mean(slide.read_region(0, 0, 0, 2048, 2048)))
        _check_close(reduced, exact)
        for box in [(0, 0, 100, 100), (101, 333, 517, 1024), (1000, 7, 1024, 9)]:
            np.testing.assert_array_equal(grid.read_box(slide, g, box), reduced[box[0]:box[2], box[1]:box[3]])


@pytest.mark.parametrize(("mpp", "used"), [(0.227, True), (0.26, True), (0.3, False)])
def test_half_plane_only_where_it_is_fine_enough(tmp_path, tissue, mpp, used):
    """Hamamatsu 40x (0.227 um: 2.2 level pixels an analysis pixel) and a half plane within the
    5% tolerance (0.26 um: 0.52 um) use it, then area-average it; 0.3 um (0.6 um) does not.
    Boxes at any origin (odd level-0 origins included) equal the same crop of the whole grid."""
    path = _jpeg_pyramid(tmp_path / "p.tif", tissue[:1200, :1100], mpp=mpp, factors=(1,))
    with slide_reader.open_slide(path) as slide:
        g = grid.choose_grid(slide.levels, native_mpp=slide.mpp, analysis_mpp=0.5)
        reduced = grid.read_box(slide, g, (0, 0, *g.shape))
        exact = grid.read_box(slide, g, (0, 0, *g.shape), reduced_decode=False)
        if used:
            _check_close(reduced, exact)
            assert not (reduced == exact).all()
        else:
            np.testing.assert_array_equal(reduced, exact)
        for top, left in [(0, 0), (1, 3), (77, 141)]:
            box = (top, left, top + 101, left + 77)
            np.testing.assert_array_equal(grid.read_box(slide, g, box), reduced[top:top + 101, left:left + 77])
