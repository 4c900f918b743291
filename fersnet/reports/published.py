"""The paper's published FER accuracies, as data (Zhao et al., ICPR 2020, arXiv:2007.04514).

These numbers are copied from the paper's result tables and are never re-run here; the report
prints them in a separate block marked "reported". Accuracies are in %, exactly as printed.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reported:
    """One row of a published comparison table."""

    method: str
    pretrain: bool          # the paper's "Pre-train" column (✓ / ✗)
    setting: str            # "single" image or image "seq"uence
    accuracy: dict          # db key -> accuracy in % as printed (a string: keeps "88.0" vs "97.30")
                            # absent where the paper gives none

    def value(self, db: str) -> float | None:
        """The accuracy on `db` as a number, or None where the paper gives none."""
        return float(self.accuracy[db]) if db in self.accuracy else None


# Rows in the order of the paper's tables (CK+: seven classes; Oulu-CASIA and MMI: six).
# A method that appears in several tables is one row with several databases.
REPORTED: tuple[Reported, ...] = (
    Reported("LBP-TOP", False, "seq", {"ckplus": "88.99", "oulu": "68.13", "mmi": "59.51"}),
    Reported("HOG 3D", False, "seq", {"ckplus": "91.44", "oulu": "70.63", "mmi": "60.89"}),
    Reported("3DCNN", False, "seq", {"ckplus": "85.9"}),
    Reported("STM-Explet", False, "seq", {"oulu": "74.59", "mmi": "75.12"}),
    Reported("IACNN", True, "single", {"ckplus": "95.37", "mmi": "71.55"}),
    Reported("DTAGN", True, "seq", {"ckplus": "97.25", "oulu": "81.46", "mmi": "70.24"}),
    Reported("IPA2LT", False, "single", {"ckplus": "91.67", "oulu": "61.02"}),
    Reported("DeRL", True, "single", {"ckplus": "97.30", "oulu": "88.0", "mmi": "73.23"}),
    Reported("LBVCNN", True, "seq", {"ckplus": "97.38", "oulu": "82.41", "mmi": "76.28"}),
    Reported("DMT-CNN", True, "single", {"ckplus": "97.55", "oulu": "87.5"}),
    Reported("ExprGAN", True, "single", {"oulu": "84.72"}),
    Reported("FERSNet", False, "single", {"ckplus": "97.35", "oulu": "83.47", "mmi": "71.31"}),
    Reported("FERSNet (BU-4DFE)", True, "single", {"ckplus": "97.85", "oulu": "89.23", "mmi": "75.32"}),
)

SOURCE = "Zhao et al., ICPR 2020 (arXiv 2007.04514), comparison tables for CK+, Oulu-CASIA and MMI"


def reported_for(db: str) -> list[Reported]:
    """The published rows that have a number for database `db`."""
    return [r for r in REPORTED if db in r.accuracy]
