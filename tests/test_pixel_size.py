"""Tests of cxcr4score.pixel_size: the order metadata > sheet > default, and bad values."""

import pytest

from cxcr4score import pixel_size


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
