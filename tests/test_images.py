"""Tests of cxcr4score.images (formats, layouts, level 0 read whole, pixel size from each
format's metadata) and of pipeline.validate_slide, which checks a slide without decoding it."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from PIL import Image

from cxcr4score import images
from cxcr4score.errors import InputError
from cxcr4score.pipeline import validate_slide

from .real_data import WSI, needs_wsi, write_tiff


def test_read_tiff_pixels_and_contiguity(tmp_path, rgb):
    image = images.read_image(write_tiff(tmp_path / "a.tif", rgb, photometric="rgb"))
    assert image.rgb.dtype == np.uint8 and image.rgb.flags.c_contiguous
    np.testing.assert_array_equal(image.rgb, rgb)
    assert image.mpp is None and image.mpp_source is None
    assert image.path == tmp_path / "a.tif"


def test_read_planar_tiff_is_returned_interleaved(tmp_path, rgb):
    path = write_tiff(tmp_path / "p.tif", np.moveaxis(rgb, 2, 0), photometric="rgb",
                       planarconfig="separate")
    image = images.read_image(path)
    assert image.rgb.flags.c_contiguous
    np.testing.assert_array_equal(image.rgb, rgb)


def test_read_png_and_jpeg(tmp_path, rgb):
    iio.imwrite(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(images.read_image(tmp_path / "a.png").rgb, rgb)
    flat = np.full((16, 16, 3), (200, 120, 60), np.uint8)
    iio.imwrite(tmp_path / "a.JPG", flat, extension=".jpg", quality=95)
    image = images.read_image(tmp_path / "a.JPG")
    assert image.rgb.shape == (16, 16, 3) and image.mpp is None
    assert np.abs(image.rgb.astype(int) - flat).max() <= 3


def test_rgba_png_is_composited_over_white(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[..., :3] = 100
    rgba[0, :, 3] = (0, 255, 128)
    iio.imwrite(tmp_path / "a.png", rgba)
    got = images.read_image(tmp_path / "a.png").rgb
    # straight alpha: 100 * a/255 + 255 * (1 - a/255), rounded
    np.testing.assert_array_equal(got[0, :, 0], [255, 100, 177])
    assert got.shape == (1, 3, 3)


def test_rgba_tiff_is_composited_over_white(tmp_path, rgb):
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 15:] = 255
    path = write_tiff(tmp_path / "a.tif", np.dstack([rgb, alpha]), photometric="rgb",
                       extrasamples=["unassalpha"])
    got = images.read_image(path).rgb
    assert (got[:, :15] == 255).all()
    np.testing.assert_array_equal(got[:, 15:], rgb[:, 15:])


@pytest.mark.parametrize(
    ("name", "pixels", "words"),
    [
        ("gray.tif", np.zeros((8, 9), np.uint8), ["grayscale", "(8, 9)", "uint8"]),
        ("gray.png", np.zeros((8, 9), np.uint8), ["grayscale", "(8, 9)", "uint8"]),
        ("rgb16.tif", np.zeros((8, 9, 3), np.uint16), ["(8, 9, 3)", "uint16"]),
        ("two.png", np.zeros((8, 9, 2), np.uint8), ["2-channel", "(8, 9, 2)"]),
    ],
)
def test_non_rgb_images_are_rejected_naming_file_shape_and_dtype(tmp_path, name, pixels, words):
    path = tmp_path / name
    if name.endswith(".png"):
        iio.imwrite(path, pixels)
    else:
        tifffile.imwrite(path, pixels, photometric="rgb" if pixels.ndim == 3 and pixels.shape[2] == 3
                         else "minisblack")
    with pytest.raises(InputError) as caught:
        images.read_image(path)
    (problem,) = caught.value.problems
    assert str(path) in problem
    for word in words:
        assert word in problem


def test_stack_of_planes_is_rejected(tmp_path, rgb):
    path = write_tiff(tmp_path / "stack.tif", np.stack([rgb, rgb]), photometric="rgb")
    with pytest.raises(InputError, match="stack"):
        images.read_image(path)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("noise.tif", b"II*\x00" + bytes(range(256)) * 4, ["cannot read the image"]),
        ("cut.png", None, ["cannot read the image"]),
        ("x.bmp", b"BM", ["unsupported image type '.bmp'"]),
        ("x.mrxs", b"", ["'.mrxs' slide is read by region with slide_reader.open_slide"]),
        ("x.vsi", b"", ["'.vsi' slide is read by region with slide_reader.open_slide"]),
    ],
)
def test_unreadable_files_give_one_plain_line(tmp_path, rgb, name, content, words):
    path = tmp_path / name
    if content is None:  # a PNG cut in half
        iio.imwrite(path, rgb)
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        images.read_image(path)
    (problem,) = caught.value.problems
    assert "\n" not in problem and "Traceback" not in problem
    assert problem.startswith(str(path))
    for word in words:
        assert word in problem


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        images.read_image(tmp_path / "nope.tif")
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        images.read_image(tmp_path / "dir.tif")



@pytest.mark.parametrize(
    ("resolution", "unit", "expected"),
    [
        (40000, "CENTIMETER", 10000 / 40000),
        (101600, "INCH", 25400 / 101600),
        (72, "INCH", None),  # placeholder
        (96, "INCH", None),  # placeholder
        (72 / 2.54, "CENTIMETER", None),  # 72 dpi written in centimetres (boxes.tiff does this)
        (40000, "NONE", None),  # no unit: no physical size
    ],
)
def test_tiff_resolution_tags(tmp_path, rgb, resolution, unit, expected):
    path = write_tiff(tmp_path / "a.tif", rgb, photometric="rgb", resolution=(resolution, resolution),
                       resolutionunit=unit)
    image = images.read_image(path)
    assert image.mpp == pytest.approx(expected)
    assert image.mpp_source == ("tiff" if expected else None)
    assert validate_slide(path)[0]["mpp"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("size", "unit", "expected"),
    [(0.25, "µm", 0.25), (250, "nm", 0.25), (0.00025, "mm", 0.25), (0.000025, "cm", 0.25),
     (0.3, None, 0.3)],
)
def test_ome_physical_size_units(tmp_path, rgb, size, unit, expected):
    metadata = {"axes": "YXS", "PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit:
        metadata.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    path = write_tiff(tmp_path / "a.ome.tif", rgb, photometric="rgb", metadata=metadata,
                       resolution=(1, 1), resolutionunit="CENTIMETER")
    image = images.read_image(path)
    assert image.mpp == pytest.approx(expected) and image.mpp_source == "ome"


def test_svs_description_gives_pixel_size(tmp_path, rgb):
    description = "Aperio Image Library v12.0.0\r\n30x20 (256x256) RAW|AppMag = 40|MPP = 0.2520|Date = 1/1/20"
    path = write_tiff(tmp_path / "a.svs", rgb, photometric="rgb", description=description, metadata=None)
    image = images.read_image(path)
    assert (image.mpp, image.mpp_source) == (pytest.approx(0.252), "svs")
    assert validate_slide(path)[0]["format"] == "svs"


@pytest.mark.parametrize(("dpi", "expected"), [(25400 / 0.25, 0.25), (72, None), (None, None)])
def test_png_phys(tmp_path, rgb, dpi, expected):
    kwargs = {"dpi": (dpi, dpi)} if dpi else {}
    Image.fromarray(rgb).save(tmp_path / "a.png", **kwargs)
    image = images.read_image(tmp_path / "a.png")
    assert image.mpp == (pytest.approx(expected, rel=1e-5) if expected else None)
    assert image.mpp_source == ("png" if expected else None)


def test_anisotropic_pixels_are_rejected(tmp_path, rgb):
    tiff = write_tiff(tmp_path / "a.tif", rgb, photometric="rgb", resolution=(40000, 38000),
                       resolutionunit="CENTIMETER")
    ome = write_tiff(tmp_path / "b.ome.tif", rgb, photometric="rgb",
                      metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5})
    for path in (tiff, ome):
        with pytest.raises(InputError, match="not square") as caught:
            images.read_image(path)
        assert str(path) in str(caught.value)


def test_tiny_anisotropy_is_averaged(tmp_path, rgb):
    path = write_tiff(tmp_path / "a.tif", rgb, photometric="rgb", resolution=(40000, 40100),
                       resolutionunit="CENTIMETER")
    assert images.read_image(path).mpp == pytest.approx((0.25 + 10000 / 40100) / 2)



@needs_wsi
@pytest.mark.parametrize(
    ("name", "shape", "mpp", "source", "fmt"),
    [
        ("OS-2-ndpi.ome.tif", (2202, 2202, 3), 0.227, "ome", "ome-tiff"),
        ("OS-2-vsi.ome.tif", (1445, 1445, 3), 0.346, "ome", "ome-tiff"),
        ("cmu_small_region.svs", (2967, 2220, 3), 0.499, "svs", "svs"),
        ("boxes.tiff", (250, 300, 3), None, None, "tiff"),
        ("small.svs", (16, 16, 3), 0.499, "svs", "svs"),
    ],
)
def test_real_slides(name, shape, mpp, source, fmt):
    image = images.read_image(WSI / name)
    assert image.rgb.shape == shape and image.rgb.dtype == np.uint8 and image.rgb.flags.c_contiguous
    assert image.mpp == pytest.approx(mpp, abs=1e-3)
    assert image.mpp_source == source
    info, problems = validate_slide(WSI / name)
    assert problems == []
    assert info == {"width": shape[1], "height": shape[0], "mpp": image.mpp, "mpp_source": source,
                    "format": fmt}


@needs_wsi
@pytest.mark.parametrize(("name", "message"), [("unopenable.tiff", "COMPRESSION"),
                                               ("unreadable.svs", "Bogus marker")])
def test_real_broken_slides(name, message):
    with pytest.raises(InputError) as caught:
        images.read_image(WSI / name)
    (problem,) = caught.value.problems
    assert problem.startswith(str(WSI / name)) and message in problem and "\n" not in problem
    info, problems = validate_slide(WSI / name)  # the readers open_slide tries (tests/test_vendor_readers.py)
    (found,) = problems
    assert found.startswith(str(WSI / name)) and message in found and "\n" not in found
    assert info["width"] is None



def test_validate_slide_reports_image_and_roi_problems(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    (tmp_path / "bad.geojson").write_text("{not json")
    info, problems = validate_slide(tmp_path / "bad.tif", roi_path=tmp_path / "bad.geojson")
    assert len(problems) == 2
    assert str(tmp_path / "bad.tif") in problems[0] and str(tmp_path / "bad.geojson") in problems[1]
    assert info["format"] is None


def test_validate_slide_good_png_with_roi(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png", dpi=(25400 / 0.5, 25400 / 0.5))
    (tmp_path / "a.geojson").write_text(
        '{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0,0],[5,0],[5,5],[0,0]]]}}'
    )
    info, problems = validate_slide(tmp_path / "a.png", roi_path=tmp_path / "a.geojson")
    assert problems == []
    assert info == {"width": 30, "height": 20, "mpp": pytest.approx(0.5), "mpp_source": "png",
                    "format": "png"}


def _forged_png(path, width, height):
    """A small PNG whose header (IHDR, with its CRC) claims ``width`` x ``height``."""
    import struct
    import zlib

    Image.new("RGB", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height after the 8-byte signature + 8
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("side, words", [(40_000, "40000 x 40000 px is too large"),
                                         (200_000, "its header gives more than")])
def test_huge_png_is_refused_before_decoding(tmp_path, side, words):
    path = _forged_png(tmp_path / "huge.png", side, side)
    with pytest.raises(InputError, match=words) as err:
        images.read_image(path)
    assert str(path) in str(err.value) and "tiled pyramidal TIFF" in str(err.value)


def _forged_tiff(path, side):
    """A 256^2 px tiled TIFF whose ImageWidth / ImageLength tags claim ``side`` x ``side`` (a
    real file of that size would fill the disk)."""
    import struct

    tifffile.imwrite(path, np.zeros((256, 256, 3), np.uint8), photometric="rgb", tile=(256, 256))
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        fields = [(tags[name].valueoffset, int(tags[name].dtype)) for name in ("ImageWidth", "ImageLength")]
    data = bytearray(path.read_bytes())
    for offset, dtype in fields:
        assert dtype == 4  # LONG: room for the claimed size
        struct.pack_into("<I", data, offset, side)
    path.write_bytes(bytes(data))
    return path


def test_huge_tiff_without_pyramid_is_refused_from_metadata(tmp_path):
    """A TIFF of 200,000^2 px without reduced levels: reading its overview would decode 40 Gpix.
    Refused from the metadata by inspect, the reader and validate_slide alike."""
    path = _forged_tiff(tmp_path / "huge.tif", 200_000)
    for read in (images.inspect_image, images.read_image):
        with pytest.raises(InputError, match="no reduced-resolution level .* would decode 40.0 Gpix"):
            read(path)
    _, problems = validate_slide(path)
    assert len(problems) == 1 and "huge.tif" in problems[0]


def test_cmyk_jpeg_is_refused_not_read_as_rgba(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (64, 64), (0, 200, 200, 0)).save(path)
    with pytest.raises(InputError, match="colour mode CMYK is not RGB"):
        images.read_image(path)


def test_palette_png_is_read_as_rgb(tmp_path, rgb):
    path = tmp_path / "palette.png"
    Image.fromarray(rgb).quantize(colors=64).save(path)
    image = images.read_image(path)
    assert image.rgb.shape == rgb.shape and image.rgb.dtype == np.uint8
    assert np.abs(image.rgb.astype(int) - rgb).mean() < 20  # quantised, but the same picture
