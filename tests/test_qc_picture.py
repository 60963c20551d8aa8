"""The QC picture's full-resolution crop: the measured outlines sit on the cells they belong to."""

import numpy as np

from cxcr4score import qc


def _square(x0, y0, side):
    return np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]], float)


def test_qc_crop_draws_each_outline_where_its_cell_is():
    """An outline at analysis pixels (10..30, 10..30), crop origin (5, 5): the drawn square's edges
    are crop columns and rows 5 and 25, in the cell's class colour; a not-scored cell is grey,
    a cell outside the crop is not drawn, and the undrawn copy shows the crop unchanged."""
    crop = np.full((60, 60, 3), 255, np.uint8)
    overview = np.full((40, 40, 3), 255, np.uint8)
    picture = qc.qc_picture(
        overview, overview_scale=2.0, crop=crop, crop_origin=(5, 5),
        cell_x=[20.0, 45.0, 300.0], cell_y=[20.0, 45.0, 300.0], cell_class=[3, -1, 2],
        cell_outlines=[_square(10, 10, 20), _square(40, 40, 10), _square(290, 290, 20)],
        nucleus_outlines=[_square(16, 16, 8), np.empty((0, 2)), _square(296, 296, 8)],
    )
    thumb_width = 40  # the overview is not shrunk below THUMBNAIL_PX
    drawn = picture[120 : 120 + 60, thumb_width + 10 : thumb_width + 70]
    undrawn = picture[120 : 120 + 60, thumb_width + 80 :]
    red, grey = np.array(qc.CLASS_COLOURS[3]), np.array(qc.UNSCORED_COLOUR)
    assert np.abs(drawn[5:26, 5].astype(int) - red).max() < 60  # left edge of the cell outline
    assert np.abs(drawn[25, 5:26].astype(int) - red).max() < 60  # bottom edge
    assert np.abs(drawn[11:20, 11].astype(int) - red).max() < 60  # the nucleus outline
    assert (drawn[15, 15] == 255).all()  # between the two outlines: untouched
    assert np.abs(drawn[35:46, 35].astype(int) - grey).max() < 60  # the unscored cell
    assert (undrawn == 255).all()
    assert not (np.abs(picture.astype(int) - qc.CLASS_COLOURS[2]).max(axis=2) < 30)[120:].any()


def test_qc_crop_gives_a_cell_without_outline_a_dot():
    crop = np.full((30, 30, 3), 255, np.uint8)
    picture = qc.qc_picture(np.full((20, 20, 3), 255, np.uint8), overview_scale=2.0, crop=crop, crop_origin=(0, 0),
                            cell_x=[15.0], cell_y=[15.0], cell_class=[1], cell_outlines=[np.empty((0, 2))],
                            nucleus_outlines=[np.empty((0, 2))])
    assert (picture[120 + 15, 20 + 10 + 15] == qc.CLASS_COLOURS[1]).all()
