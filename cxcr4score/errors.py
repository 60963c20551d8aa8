"""The error every user-facing check raises: bad input, named in plain words.

Everything a user hands us (slides, sheets, ROI files, pathologist scores) is checked where it
is read, and every problem found is reported through :class:`InputError`, naming the file or
sheet row, never as a library traceback.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: every problem found, each naming the file or sheet row.

    Parameters
    ----------
    problems : list of str
        One plain-language sentence per problem.

    Notes
    -----
    ``str(error)`` lists every problem on its own line, ready to print without a traceback.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
