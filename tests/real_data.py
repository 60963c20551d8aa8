"""Where the real scans are (``../shared/data/wsi``, crops of OpenSlide's test data), and
writing small image files for tests."""

from pathlib import Path

import pytest
import tifffile

WSI = Path(__file__).resolve().parents[2] / "shared" / "data" / "wsi"
#: For tests that read the real scans: skipped with this reason where they are absent.
needs_wsi = pytest.mark.skipif(not WSI.is_dir(), reason=f"real test slides not present at {WSI}")


def write_tiff(path, pixels, **kwargs):
    """Write ``pixels`` with tifffile and return ``path``."""
    tifffile.imwrite(path, pixels, **kwargs)
    return path
