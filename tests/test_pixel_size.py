"""Tests of cxcr4score.pixel_size: the order metadata > sheet > default, and bad values."""

from pathlib import Path

import pytest

from cxcr4score import pixel_size
from cxcr4score.errors import InputError


def test_resolve_mpp_order():
    assert pixel_size.resolve_mpp(0.25, "", 0.5) == (0.25, "metadata", None)
    assert pixel_size.resolve_mpp(None, "0.3", 0.5) == (0.3, "sheet", None)
    assert pixel_size.resolve_mpp(None, 0.3, 0.5) == (0.3, "sheet", None)
    mpp, source, warning = pixel_size.resolve_mpp(None, None, 0.5)
    assert (mpp, source) == (0.5, "default") and "default_mpp 0.5" in warning


def test_resolve_mpp_warns_when_sheet_disagrees_with_metadata():
    mpp, source, warning = pixel_size.resolve_mpp(0.25, "0.5", 0.5)
    assert (mpp, source) == (0.25, "metadata") and "differs" in warning
    assert pixel_size.resolve_mpp(0.25, "0.251", 0.5)[2] is None


@pytest.mark.parametrize(("sheet", "default"), [("abc", 0.5), ("-1", 0.5), (None, 0)])
def test_resolve_mpp_rejects_bad_values(sheet, default):
    with pytest.raises(ValueError, match="positive"):
        pixel_size.resolve_mpp(None, sheet, default)


@pytest.mark.parametrize(
    ("x_um", "y_um", "expected"),
    [("0.2527", "0.2527", (pytest.approx(0.2527), "openslide")), (None, "0.25", (None, None)),
     ("0", "0", (None, None)), ("352.77777983377013", "352.77777983377013", (None, None)),  # 72 dpi
     (25400 / 96, 25400 / 96, (None, None)), (10000.0, 10000.0, (None, None))],  # 96 dpi, 1 px/cm
)
def test_reader_mpp_ignores_absent_and_placeholder_values(x_um, y_um, expected):
    assert pixel_size.reader_mpp(Path("s.mrxs"), x_um, y_um, "openslide") == expected


def test_reader_mpp_refuses_anisotropic_pixels():
    with pytest.raises(InputError, match=r"s.vsi: pixels are not square \(slideio pixel size: x 0.25 um, y 0.3 um\)"):
        pixel_size.reader_mpp(Path("s.vsi"), 0.25, 0.3, "slideio")
