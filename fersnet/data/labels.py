"""Expression label codes of each database (docs/datasets/*.md) and the protocol's classes, as the
catalogue (fersnet/catalog.py) gives them."""
from __future__ import annotations

from fersnet import catalog

# CK+ Emotion/*.txt: a single float code 0-7 (official ReadMe).
CKPLUS_CODES = catalog.database("ckplus").label_codes
# Oulu-CASIA expression folder names -> our names.
OULU_FOLDERS = catalog.database("oulu").label_codes
# MMI <Metatag Name="Emotion" Value="N"/>: 1-6 are the basic emotions (3P, see docs).
MMI_CODES = catalog.database("mmi").label_codes


def classes(cfg: dict, db: str) -> list[str]:
    """The class list (index = label) of a database under the configured protocol."""
    if db not in catalog.DATABASES:
        raise KeyError(db)
    return catalog.database(db).class_list(cfg)
