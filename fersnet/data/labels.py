"""Expression label codes of each database (docs/datasets/*.md) and the protocol's classes."""
from __future__ import annotations

# CK+ Emotion/*.txt: a single float code 0-7 (official ReadMe).
CKPLUS_CODES = {0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear",
                5: "happy", 6: "sadness", 7: "surprise"}

# Oulu-CASIA expression folder names -> our names.
OULU_FOLDERS = {"Anger": "anger", "Disgust": "disgust", "Fear": "fear",
                "Happiness": "happy", "Sadness": "sadness", "Surprise": "surprise"}

# MMI <Metatag Name="Emotion" Value="N"/>: 1-6 are the basic emotions (3P, see docs).
MMI_CODES = {1: "anger", 2: "disgust", 3: "fear", 4: "happy", 5: "sadness", 6: "surprise"}

SIX = ["anger", "disgust", "fear", "happy", "sadness", "surprise"]

# The known protocol counts: labelled sequences and subjects.
PROTOCOL_COUNTS = {"ckplus": (327, 118), "oulu": (480, 80), "mmi": (205, 30)}


def classes(cfg: dict, db: str) -> list[str]:
    """The class list (index = label) of a database under the configured protocol."""
    if db == "ckplus":
        seven = ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]
        return (["neutral"] if cfg["data"]["ckplus"]["include_neutral"] else []) + seven
    if db in ("oulu", "mmi"):
        return list(SIX)
    raise KeyError(db)
