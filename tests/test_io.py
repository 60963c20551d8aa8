"""Tests for cxcr4score.io: image reading, pixel size, sheets, folders, tables."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from cxcr4score import io
from cxcr4score.io import InputError

WSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "wsi"
needs_wsi = pytest.mark.skipif(not WSI.is_dir(), reason=f"real test slides not present at {WSI}")


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)


def _write_tiff(path, pixels, **kwargs):
    tifffile.imwrite(path, pixels, **kwargs)
    return path


# --------------------------------------------------------------------------- InputError


def test_input_error_lists_every_problem_on_its_own_line():
    error = InputError(["a.tsv row 1: slide_id is empty", "a.tsv row 2: mpp 'x' is bad"])
    assert error.problems == ["a.tsv row 1: slide_id is empty", "a.tsv row 2: mpp 'x' is bad"]
    assert str(error).splitlines() == error.problems


# --------------------------------------------------------------------------- read_image: formats


def test_read_tiff_pixels_and_contiguity(tmp_path, rgb):
    image = io.read_image(_write_tiff(tmp_path / "a.tif", rgb, photometric="rgb"))
    assert image.rgb.dtype == np.uint8 and image.rgb.flags.c_contiguous
    np.testing.assert_array_equal(image.rgb, rgb)
    assert image.mpp is None and image.mpp_source is None
    assert image.path == tmp_path / "a.tif"


def test_read_planar_tiff_is_returned_interleaved(tmp_path, rgb):
    path = _write_tiff(tmp_path / "p.tif", np.moveaxis(rgb, 2, 0), photometric="rgb",
                       planarconfig="separate")
    image = io.read_image(path)
    assert image.rgb.flags.c_contiguous
    np.testing.assert_array_equal(image.rgb, rgb)


def test_read_png_and_jpeg(tmp_path, rgb):
    iio.imwrite(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.png").rgb, rgb)
    flat = np.full((16, 16, 3), (200, 120, 60), np.uint8)
    iio.imwrite(tmp_path / "a.JPG", flat, extension=".jpg", quality=95)
    image = io.read_image(tmp_path / "a.JPG")
    assert image.rgb.shape == (16, 16, 3) and image.mpp is None
    assert np.abs(image.rgb.astype(int) - flat).max() <= 3


def test_rgba_png_is_composited_over_white(tmp_path):
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[..., :3] = 100
    rgba[0, :, 3] = (0, 255, 128)
    iio.imwrite(tmp_path / "a.png", rgba)
    got = io.read_image(tmp_path / "a.png").rgb
    # straight alpha: 100 * a/255 + 255 * (1 - a/255), rounded
    np.testing.assert_array_equal(got[0, :, 0], [255, 100, 177])
    assert got.shape == (1, 3, 3)


def test_rgba_tiff_is_composited_over_white(tmp_path, rgb):
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 15:] = 255
    path = _write_tiff(tmp_path / "a.tif", np.dstack([rgb, alpha]), photometric="rgb",
                       extrasamples=["unassalpha"])
    got = io.read_image(path).rgb
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
        io.read_image(path)
    (problem,) = caught.value.problems
    assert str(path) in problem
    for word in words:
        assert word in problem


def test_stack_of_planes_is_rejected(tmp_path, rgb):
    path = _write_tiff(tmp_path / "stack.tif", np.stack([rgb, rgb]), photometric="rgb")
    with pytest.raises(InputError, match="stack"):
        io.read_image(path)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("noise.tif", b"II*\x00" + bytes(range(256)) * 4, ["cannot read the image"]),
        ("cut.png", None, ["cannot read the image"]),
        ("x.bmp", b"BM", ["unsupported image type '.bmp'"]),
        ("x.mrxs", b"", ["MIRAX", "convert"]),
        ("x.vsi", b"", ["Olympus", "convert"]),
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
        io.read_image(path)
    (problem,) = caught.value.problems
    assert "\n" not in problem and "Traceback" not in problem
    assert problem.startswith(str(path))
    for word in words:
        assert word in problem


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        io.read_image(tmp_path / "nope.tif")
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        io.read_image(tmp_path / "dir.tif")


# --------------------------------------------------------------------------- read_image: pixel size


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
    path = _write_tiff(tmp_path / "a.tif", rgb, photometric="rgb", resolution=(resolution, resolution),
                       resolutionunit=unit)
    image = io.read_image(path)
    assert image.mpp == pytest.approx(expected)
    assert image.mpp_source == ("tiff" if expected else None)
    assert io.validate_slide(path)[0]["mpp"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("size", "unit", "expected"),
    [(0.25, "µm", 0.25), (250, "nm", 0.25), (0.00025, "mm", 0.25), (0.000025, "cm", 0.25),
     (0.3, None, 0.3)],
)
def test_ome_physical_size_units(tmp_path, rgb, size, unit, expected):
    metadata = {"axes": "YXS", "PhysicalSizeX": size, "PhysicalSizeY": size}
    if unit:
        metadata.update(PhysicalSizeXUnit=unit, PhysicalSizeYUnit=unit)
    path = _write_tiff(tmp_path / "a.ome.tif", rgb, photometric="rgb", metadata=metadata,
                       resolution=(1, 1), resolutionunit="CENTIMETER")
    image = io.read_image(path)
    assert image.mpp == pytest.approx(expected) and image.mpp_source == "ome"


def test_svs_description_gives_pixel_size(tmp_path, rgb):
    description = "Aperio Image Library v12.0.0\r\n30x20 (256x256) RAW|AppMag = 40|MPP = 0.2520|Date = 1/1/20"
    path = _write_tiff(tmp_path / "a.svs", rgb, photometric="rgb", description=description, metadata=None)
    image = io.read_image(path)
    assert (image.mpp, image.mpp_source) == (pytest.approx(0.252), "svs")
    assert io.validate_slide(path)[0]["format"] == "svs"


@pytest.mark.parametrize(("dpi", "expected"), [(25400 / 0.25, 0.25), (72, None), (None, None)])
def test_png_phys(tmp_path, rgb, dpi, expected):
    kwargs = {"dpi": (dpi, dpi)} if dpi else {}
    Image.fromarray(rgb).save(tmp_path / "a.png", **kwargs)
    image = io.read_image(tmp_path / "a.png")
    assert image.mpp == (pytest.approx(expected, rel=1e-5) if expected else None)
    assert image.mpp_source == ("png" if expected else None)


def test_anisotropic_pixels_are_rejected(tmp_path, rgb):
    tiff = _write_tiff(tmp_path / "a.tif", rgb, photometric="rgb", resolution=(40000, 38000),
                       resolutionunit="CENTIMETER")
    ome = _write_tiff(tmp_path / "b.ome.tif", rgb, photometric="rgb",
                      metadata={"axes": "YXS", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.5})
    for path in (tiff, ome):
        with pytest.raises(InputError, match="not square") as caught:
            io.read_image(path)
        assert str(path) in str(caught.value)


def test_tiny_anisotropy_is_averaged(tmp_path, rgb):
    path = _write_tiff(tmp_path / "a.tif", rgb, photometric="rgb", resolution=(40000, 40100),
                       resolutionunit="CENTIMETER")
    assert io.read_image(path).mpp == pytest.approx((0.25 + 10000 / 40100) / 2)


# --------------------------------------------------------------------------- real files


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
    image = io.read_image(WSI / name)
    assert image.rgb.shape == shape and image.rgb.dtype == np.uint8 and image.rgb.flags.c_contiguous
    assert image.mpp == pytest.approx(mpp, abs=1e-3)
    assert image.mpp_source == source
    info, problems = io.validate_slide(WSI / name)
    assert problems == []
    assert info == {"width": shape[1], "height": shape[0], "mpp": image.mpp, "mpp_source": source,
                    "format": fmt}


@needs_wsi
@pytest.mark.parametrize(("name", "message"), [("unopenable.tiff", "COMPRESSION"),
                                               ("unreadable.svs", "Bogus marker")])
def test_real_broken_slides(name, message):
    with pytest.raises(InputError) as caught:
        io.read_image(WSI / name)
    (problem,) = caught.value.problems
    assert problem.startswith(str(WSI / name)) and message in problem and "\n" not in problem
    info, problems = io.validate_slide(WSI / name)
    assert problems == caught.value.problems
    assert info["width"] is None


# --------------------------------------------------------------------------- validate_slide


def test_validate_slide_reports_image_and_roi_problems(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    (tmp_path / "bad.geojson").write_text("{not json")
    info, problems = io.validate_slide(tmp_path / "bad.tif", roi=tmp_path / "bad.geojson")
    assert len(problems) == 2
    assert str(tmp_path / "bad.tif") in problems[0] and str(tmp_path / "bad.geojson") in problems[1]
    assert info["format"] is None


def test_validate_slide_good_png_with_roi(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png", dpi=(25400 / 0.5, 25400 / 0.5))
    (tmp_path / "a.geojson").write_text(
        '{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0,0],[5,0],[5,5],[0,0]]]}}'
    )
    info, problems = io.validate_slide(tmp_path / "a.png", roi=tmp_path / "a.geojson")
    assert problems == []
    assert info == {"width": 30, "height": 20, "mpp": pytest.approx(0.5), "mpp_source": "png",
                    "format": "png"}


# --------------------------------------------------------------------------- resolve_mpp


def test_resolve_mpp_order():
    assert io.resolve_mpp(0.25, "", 0.5) == (0.25, "metadata", None)
    assert io.resolve_mpp(None, "0.3", 0.5) == (0.3, "sheet", None)
    assert io.resolve_mpp(None, 0.3, 0.5) == (0.3, "sheet", None)
    mpp, source, warning = io.resolve_mpp(None, None, 0.5)
    assert (mpp, source) == (0.5, "default") and "default_mpp 0.5" in warning


def test_resolve_mpp_warns_when_sheet_disagrees_with_metadata():
    mpp, source, warning = io.resolve_mpp(0.25, "0.5", 0.5)
    assert (mpp, source) == (0.25, "metadata") and "differs" in warning
    assert io.resolve_mpp(0.25, "0.251", 0.5)[2] is None


@pytest.mark.parametrize(("sheet", "default"), [("abc", 0.5), ("-1", 0.5), (None, 0)])
def test_resolve_mpp_rejects_bad_values(sheet, default):
    with pytest.raises(ValueError, match="positive"):
        io.resolve_mpp(None, sheet, default)


# --------------------------------------------------------------------------- sheets


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_read_sheet_tsv_keeps_strings_and_resolves_paths(tmp_path):
    _touch(tmp_path / "img" / "a.svs")
    _touch(tmp_path / "img" / "a.geojson")
    (tmp_path / "slides.tsv").write_text(
        "patient_id\tslide_id\tpath\troi\tblock\n007\t007-A\timg/a.svs\timg/a.geojson\t 0012 \n"
    )
    table = io.read_sheet(tmp_path / "slides.tsv")
    assert list(table.columns) == list(io.SHEET_COLUMNS) + ["block"]
    row = table.iloc[0]
    assert row["patient_id"] == "007" and row["block"] == "0012"
    assert row["path"] == str(tmp_path / "img" / "a.svs")
    assert row["roi"] == str(tmp_path / "img" / "a.geojson")
    assert row["mpp"] == "" and row["collected"] == ""


@pytest.mark.parametrize(("name", "sep"), [("s.csv", ","), ("s.txt", ";"), ("t.txt", "\t")])
def test_read_sheet_separators(tmp_path, name, sep):
    _touch(tmp_path / "a.tif")
    lines = ["patient_id,slide_id,path,mpp,collected", "0042,S1,a.tif,0.25,2024-03-01"]
    (tmp_path / name).write_text("\n".join(line.replace(",", sep) for line in lines) + "\n")
    table = io.read_sheet(tmp_path / name)
    assert table.loc[0, ["patient_id", "mpp", "collected"]].tolist() == ["0042", "0.25", "2024-03-01"]


def test_read_sheet_lists_every_problem_with_row_numbers(tmp_path):
    _touch(tmp_path / "ok.tif")
    _touch(tmp_path / "ok.txt")
    (tmp_path / "folder.tif").mkdir()
    rows = [
        "patient_id\tslide_id\tpath\tmpp\troi\tcollected",
        "P1\tS1\tok.tif\t0.25\t\t2020-01-31",  # row 1 fine
        "\tS2\tok.tif\t\t\t",  # row 2 empty patient
        "P3\tS 3\tok.tif\tabc\t\t",  # row 3 bad id, bad mpp
        "P4\tS1\tmissing.tif\t-0.5\tnone.geojson\t31/01/2020",  # row 4 dup, missing, mpp, roi, date
        "P5\t\tfolder.tif\t\t\t",  # row 5 empty slide_id, folder as path
        "P6\tS6\tok.txt\t\t\t",  # row 6 not an image type
    ]
    (tmp_path / "slides.tsv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError) as caught:
        io.read_sheet(tmp_path / "slides.tsv")
    problems = caught.value.problems
    expected = [
        ("slides.tsv row 2:", "patient_id is empty"),
        ("slides.tsv row 3:", "slide_id 'S 3' may only contain"),
        ("slides.tsv row 3:", "mpp 'abc' is not a positive number"),
        ("slides.tsv row 4:", "mpp '-0.5' is not a positive number"),
        ("slides.tsv row 4:", "collected '31/01/2020' is not an ISO date"),
        ("slides.tsv row 4:", "image file not found"),
        ("slides.tsv row 4:", "roi file not found"),
        ("slides.tsv row 4:", "slide_id 'S1' repeats row 1"),
        ("slides.tsv row 5:", "slide_id is empty"),
        ("slides.tsv row 5:", "is a folder"),
        ("slides.tsv row 6:", "not a supported image type"),
    ]
    for prefix, text in expected:
        assert any(p.startswith(prefix) and text in p for p in problems), (prefix, text, problems)
    assert len(problems) == len(expected)
    assert not any(p.startswith("slides.tsv row 1:") for p in problems)


def test_read_sheet_missing_columns_and_empty(tmp_path):
    (tmp_path / "a.csv").write_text("patient,slide_id\n")
    with pytest.raises(InputError) as caught:
        io.read_sheet(tmp_path / "a.csv")
    assert caught.value.problems == [
        "a.csv: missing required column 'patient_id'",
        "a.csv: missing required column 'path'",
        "a.csv: has no slide rows",
    ]
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(InputError, match="empty"):
        io.read_sheet(tmp_path / "empty.tsv")


def test_read_sheet_bad_file_type_and_missing(tmp_path):
    (tmp_path / "a.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match=r"\.tsv, \.csv or \.txt"):
        io.read_sheet(tmp_path / "a.xlsx")
    with pytest.raises(InputError, match="not found"):
        io.read_sheet(tmp_path / "none.tsv")


@pytest.mark.parametrize(("body", "words"), [
    ("P1,S1,a.tif,extra,more\n", "more values than the header"),
    ("P1,S1,a.tif\nP2,S2,b.tif,extra\n", "cannot read the sample sheet"),
])
def test_read_sheet_ragged_rows_are_a_plain_error(tmp_path, body, words):
    (tmp_path / "a.csv").write_text("patient_id,slide_id,path\n" + body)
    with pytest.raises(InputError) as caught:
        io.read_sheet(tmp_path / "a.csv")
    (problem,) = caught.value.problems
    assert problem.startswith(str(tmp_path / "a.csv")) and words in problem and "\n" not in problem


# --------------------------------------------------------------------------- folders


def test_folder_rules(tmp_path):
    _touch(tmp_path / "P01" / "b.svs")
    _touch(tmp_path / "P01" / "a.ome.tif")
    _touch(tmp_path / "P01" / "a.roi.geojson")
    _touch(tmp_path / "P01" / "a.truth.csv")
    _touch(tmp_path / "P01" / ".hidden.tif")
    _touch(tmp_path / "P01" / "nested" / "deep.tif")  # one level only
    _touch(tmp_path / "Pat 2" / "x y.TIFF")
    _touch(tmp_path / "loose.png")
    _touch(tmp_path / "loose.geojson")
    _touch(tmp_path / ".git" / "z.tif")
    _touch(tmp_path / "notes.txt")
    table = io.slides_from_folder(tmp_path)
    assert list(table.columns) == list(io.SHEET_COLUMNS)
    assert table[["patient_id", "slide_id"]].values.tolist() == [
        ["P01", "P01__a"],
        ["P01", "P01__b"],
        ["Pat_2", "Pat_2__x_y"],
        ["loose", "loose__loose"],
    ]
    assert table["path"].tolist() == [str(tmp_path / p) for p in
                                      ("P01/a.ome.tif", "P01/b.svs", "Pat 2/x y.TIFF", "loose.png")]
    assert table["roi"].tolist() == [str(tmp_path / "P01" / "a.roi.geojson"), "", "",
                                     str(tmp_path / "loose.geojson")]
    assert (table[["mpp", "specimen", "collected"]] == "").all().all()


def test_companion_folders_are_not_patients(tmp_path):
    _touch(tmp_path / "s1.mrxs")
    _touch(tmp_path / "s1" / "Index.tif")  # inside a MIRAX data folder
    _touch(tmp_path / "s2.vsi")
    _touch(tmp_path / "_s2_" / "stack1" / "frame_t.tif")
    _touch(tmp_path / "_s2_" / "x.tif")
    table = io.slides_from_folder(tmp_path)
    assert table["slide_id"].tolist() == ["s1__s1", "s2__s2"]


def test_patient_pattern_overrides_folders(tmp_path):
    _touch(tmp_path / "batch1" / "007_A.svs")
    _touch(tmp_path / "batch2" / "007_B.svs")
    _touch(tmp_path / "012_A.tif")
    table = io.load_slides(tmp_path, patient_pattern=r"^(?P<patient>\d+)_")
    assert table[["patient_id", "slide_id"]].values.tolist() == [
        ["007", "007__007_A"], ["007", "007__007_B"], ["012", "012__012_A"]]


def test_patient_pattern_problems(tmp_path):
    _touch(tmp_path / "007_A.svs")
    _touch(tmp_path / "other.svs")
    with pytest.raises(InputError) as caught:
        io.slides_from_folder(tmp_path, patient_pattern=r"^(?P<patient>\d+)_")
    assert caught.value.problems == [f"{tmp_path / 'other.svs'}: patient_pattern "
                                     r"'^(?P<patient>\d+)_' finds no patient in the file name"]
    with pytest.raises(InputError, match="no named group 'patient'"):
        io.slides_from_folder(tmp_path, patient_pattern=r"^(\d+)_")
    with pytest.raises(InputError, match="not a valid regular expression"):
        io.slides_from_folder(tmp_path, patient_pattern=r"(?P<patient>")


def test_folder_duplicate_slide_ids_and_empty(tmp_path):
    _touch(tmp_path / "P1" / "a b.svs")
    _touch(tmp_path / "P1" / "a_b.tif")
    with pytest.raises(InputError, match="P1__a_b"):
        io.slides_from_folder(tmp_path)
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "empty" / "readme.md")
    with pytest.raises(InputError, match="no slide images"):
        io.slides_from_folder(tmp_path / "empty")
    with pytest.raises(InputError, match="not found"):
        io.slides_from_folder(tmp_path / "none")


def test_folder_order_is_deterministic(tmp_path):
    for name in ("c.tif", "a.tif", "B.tif"):
        _touch(tmp_path / "P" / name)
    first = io.slides_from_folder(tmp_path)
    assert first["slide_id"].tolist() == ["P__B", "P__a", "P__c"]
    pd.testing.assert_frame_equal(first, io.slides_from_folder(tmp_path))


def test_sanitise_id():
    assert io.sanitise_id("Pat 2/ü-x.y_z") == "Pat_2__-x.y_z"


# --------------------------------------------------------------------------- load_slides


def test_load_slides_dispatches(tmp_path):
    _touch(tmp_path / "cohort" / "P1" / "a.tif")
    (tmp_path / "s.tsv").write_text("patient_id\tslide_id\tpath\n1\tS\tcohort/P1/a.tif\n")
    from_sheet = io.load_slides(tmp_path / "s.tsv", patient_pattern="ignored(?P<patient>x)")
    from_folder = io.load_slides(str(tmp_path / "cohort"))
    assert list(from_sheet.columns) == list(from_folder.columns) == list(io.SHEET_COLUMNS)
    assert from_sheet.loc[0, "path"] == from_folder.loc[0, "path"] == str(tmp_path / "cohort/P1/a.tif")
    with pytest.raises(InputError, match="slides not found"):
        io.load_slides(tmp_path / "nothing")


# --------------------------------------------------------------------------- write_table


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_write_table_round_trip_atomic(tmp_path, suffix):
    table = pd.DataFrame({"patient_id": ["007", "010"], "n": [1, 2]})
    path = tmp_path / "deep" / "er" / f"t{suffix}"
    io.write_table(table, path)
    io.write_table(table, path)  # overwrite
    if suffix == ".csv":
        back = pd.read_csv(path, dtype={"patient_id": str})
    else:
        back = pd.read_parquet(path)
    assert back["patient_id"].tolist() == ["007", "010"] and back["n"].tolist() == [1, 2]
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_write_table_failure_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "t.parquet"
    io.write_table(pd.DataFrame({"a": [1]}), path)
    with pytest.raises(Exception):  # pyarrow cannot store Python objects of mixed types
        io.write_table(pd.DataFrame({"a": [object(), 1]}), path)
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]
    assert pd.read_parquet(path)["a"].tolist() == [1]


def test_write_table_rejects_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match="csv or .parquet"):
        io.write_table(pd.DataFrame(), tmp_path / "t.xlsx")


# --------------------------------------------------------------------------- open_slide / read_region


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
    with io.open_slide(path) as slide:
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
    np.testing.assert_array_equal(io.read_image(path).rgb, levels[0])


def test_downsample_is_the_mean_shape_ratio_of_both_axes(tmp_path):
    levels = [np.zeros((250, 300, 3), np.uint8), np.zeros((62, 75, 3), np.uint8)]
    with io.open_slide(_write_pyramid(tmp_path / "a.tif", levels, tile=(16, 16))) as slide:
        assert slide.levels == (io.Level((250, 300), 1.0), io.Level((62, 75), (250 / 62 + 4) / 2))


def test_read_region_planar_and_rgba_tiffs(tmp_path):
    levels = _pyramid(seed=2, shape=(130, 140), n_levels=2)
    planar = [np.ascontiguousarray(np.moveaxis(level, 2, 0)) for level in levels]
    path = _write_pyramid(tmp_path / "planar.tif", planar, planarconfig="separate", tile=(32, 32))
    with io.open_slide(path) as slide:
        for index, pixels in enumerate(levels):
            np.testing.assert_array_equal(slide.read_region(index, -3, 20, 50, 70),
                                          _expected_region(pixels, -3, 20, 50, 70))
    rgba = _pyramid(seed=3, shape=(64, 96), n_levels=2, channels=4)
    for level in rgba:
        level[:, : level.shape[1] // 2, 3] = 0  # left half transparent
        level[:, level.shape[1] // 2:, 3] = 255
    path = _write_pyramid(tmp_path / "rgba.tif", rgba, tile=(16, 16), extrasamples=["unassalpha"])
    with io.open_slide(path) as slide:
        for index, pixels in enumerate(rgba):
            rows, cols = pixels.shape[:2]
            got = slide.read_region(index, 0, 0, rows, cols)
            assert got.shape == (rows, cols, 3) and (got[:, : cols // 2] == 255).all()
            np.testing.assert_array_equal(got[:, cols // 2:], pixels[:, cols // 2:, :3])


def test_stripped_single_level_tiff(tmp_path, rgb):
    path = _write_tiff(tmp_path / "a.tif", rgb, photometric="rgb", rowsperstrip=3)
    with io.open_slide(path) as slide:
        assert slide.levels == (io.Level((20, 30), 1.0),)
        np.testing.assert_array_equal(slide.read_region(0, 4, 5, 30, 10), _expected_region(rgb, 4, 5, 30, 10))


def test_only_the_touched_tiles_are_decoded(tmp_path):
    """A 4096 x 4096 slide whose tiles are all corrupt except one still reads that tile."""
    pixels = np.zeros((4096, 4096, 3), np.uint8)
    good = np.random.default_rng(4).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    pixels[256:512, 512:768] = good
    path = _write_tiff(tmp_path / "big.tif", pixels, photometric="rgb", tile=(256, 256),
                       compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        keep = 1 * (4096 // 256) + 2  # tile row 1, tile column 2
        spans = [(o, n) for i, (o, n) in enumerate(zip(page.dataoffsets, page.databytecounts)) if i != keep]
    with open(path, "r+b") as handle:
        for offset, count in spans:
            handle.seek(offset)
            handle.write(b"\xff" * count)
    with io.open_slide(path) as slide:
        np.testing.assert_array_equal(slide.read_region(0, 256, 512, 256, 256), good)
        np.testing.assert_array_equal(slide.read_region(0, 300, 600, 16, 16), good[44:60, 88:104])
        with pytest.raises(InputError) as caught:  # a corrupt tile fails when it is read
            slide.read_region(0, 0, 0, 256, 256)
    (problem,) = caught.value.problems
    assert problem.startswith(str(path)) and "cannot read the image" in problem and "\n" not in problem


def test_png_is_one_level_and_sliced(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png", dpi=(25400 / 0.5, 25400 / 0.5))
    with io.open_slide(tmp_path / "a.png") as slide:
        assert slide.levels == (io.Level((20, 30), 1.0),)
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
    with io.open_slide(_write_tiff(tmp_path / "a.tif", rgb, photometric="rgb")) as slide:
        with pytest.raises(ValueError) as caught:
            slide.read_region(*args)
    for word in words:
        assert word in str(caught.value)


def test_closed_reader_and_pickling(tmp_path, rgb):
    import pickle

    slide = io.open_slide(_write_tiff(tmp_path / "a.tif", rgb, photometric="rgb"))
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
        io.open_slide(path)
    (problem,) = caught.value.problems
    assert problem.startswith(str(path)) and "\n" not in problem
    for word in words:
        assert word in problem


@needs_wsi
def test_real_pyramid_levels():
    with io.open_slide(WSI / "boxes.tiff") as slide:
        assert [level.shape for level in slide.levels] == [(250, 300), (125, 150), (62, 75), (31, 37)]
        assert [level.downsample for level in slide.levels] == pytest.approx(
            [1.0, 2.0, (250 / 62 + 300 / 75) / 2, (250 / 31 + 300 / 37) / 2])
        with tifffile.TiffFile(WSI / "boxes.tiff") as tif:
            level2 = tif.series[0].levels[2].asarray()
        np.testing.assert_array_equal(slide.read_region(2, 10, 20, 40, 50), level2[10:50, 20:70])


@needs_wsi
def test_real_svs_region_matches_read_image_and_skips_associated_images():
    full = io.read_image(WSI / "cmu_small_region.svs").rgb
    with io.open_slide(WSI / "cmu_small_region.svs") as slide:
        assert slide.levels == (io.Level((2967, 2220), 1.0),)  # thumbnail, label, macro are not levels
        assert (slide.mpp, slide.mpp_source) == (pytest.approx(0.499), "svs")
        np.testing.assert_array_equal(slide.read_region(0, 1000, 700, 300, 500), full[1000:1300, 700:1200])
        edge = slide.read_region(0, 2900, 2100, 100, 200)
        np.testing.assert_array_equal(edge[:67, :120], full[2900:, 2100:])
        assert (edge[67:] == 255).all() and (edge[:, 120:] == 255).all()


@needs_wsi
def test_real_ome_pixel_size_via_open_slide():
    with io.open_slide(WSI / "OS-2-ndpi.ome.tif") as slide:
        assert (slide.mpp, slide.mpp_source) == (pytest.approx(0.2271, abs=1e-4), "ome")
        assert slide.levels == (io.Level((2202, 2202), 1.0),)


@needs_wsi
@pytest.mark.parametrize(("name", "message"), [("unopenable.tiff", "COMPRESSION"),
                                               ("unreadable.svs", "Bogus marker")])
def test_real_broken_slides_via_open_slide(name, message):
    with pytest.raises(InputError) as caught:
        with io.open_slide(WSI / name) as slide:
            slide.read_region(0, 0, 0, 16, 16)
    (problem,) = caught.value.problems
    assert problem.startswith(str(WSI / name)) and message in problem and "\n" not in problem


def _segment_cases(tmp_path):
    """JPEG tiles (the synthetic writer), JPEG tiles with shared tables (SVS), sparse tiles."""
    from cxcr4score import synthetic

    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(150.0, 170.0)), seed=1)
    yield synthetic.write_tile(tile, tmp_path / "jpeg.tif", jpeg_quality=90)
    svs = Path(__file__).resolve().parents[2] / "shared" / "data" / "wsi" / "cmu_small_region.svs"
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
    import numba

    for path in _segment_cases(tmp_path):
        with io.open_slide(path) as slide:
            for level, (rows, cols) in enumerate(lv.shape for lv in slide.levels):
                assert slide._segment_layouts[level] is not None, path
                for top, left, height, width in [(0, 0, rows, cols), (7, 33, rows // 2, cols // 3),
                                                 (-9, cols - 20, 40, 50), (rows - 1, 0, 1, cols)]:
                    whole = slide._read_tiff_pixels(level, 0, rows, 0, cols)
                    expected = _expected_region(whole, top, left, height, width)
                    threads = numba.get_num_threads()
                    try:
                        for n in (1, 2):
                            numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
                            np.testing.assert_array_equal(slide.read_region(level, top, left, height, width), expected)
                    finally:
                        numba.set_num_threads(threads)
        if path.name == "sparse.tif":
            with tifffile.TiffFile(path) as tif:
                nodata = tif.pages[0].nodata
            with io.open_slide(path) as slide:
                assert (slide.read_region(0, 32, 32, 32, 32) == nodata).all()


def test_planar_and_rgba_levels_use_the_zarr_store(tmp_path):
    planar = _write_pyramid(tmp_path / "planar.tif", [np.zeros((3, 40, 40), np.uint8)], planarconfig="separate",
                            tile=(16, 16))
    rgba = _write_pyramid(tmp_path / "rgba.tif", [np.zeros((40, 40, 4), np.uint8)], tile=(16, 16),
                          extrasamples=["unassalpha"])
    for path in (planar, rgba):
        with io.open_slide(path) as slide:
            assert slide._segment_layouts == [None]
