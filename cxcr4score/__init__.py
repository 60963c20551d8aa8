"""cxcr4score: CXCR4 IHC scoring and per-patient trial eligibility (research use only).

The output supports, and does not replace, a pathologist's assessment of a validated
CXCR4 assay.
"""

__version__ = "0.1.0"

INTENDED_USE = (
    "Research use only: cxcr4score output supports, and does not replace, "
    "a pathologist's assessment of a validated CXCR4 assay."
)
