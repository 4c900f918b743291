"""Display names, used by every table, figure and log line; those of models and databases are
read from the catalogue (fersnet/catalog.py) whenever they are looked up."""
from __future__ import annotations

from collections.abc import Mapping

from fersnet import catalog


class _Live(Mapping):
    """A read-only key -> name mapping computed from the catalogue at each lookup."""

    def __init__(self, build):
        self._build = build

    def __getitem__(self, key):
        return self._build()[key]

    def __iter__(self):
        return iter(self._build())

    def __len__(self):
        return len(self._build())


DATABASE = _Live(lambda: {k: s.name for k, s in catalog.DATABASES.items()})
MODEL = _Live(lambda: {**{k: s.name for k, s in catalog.models().items()}, catalog.JUDGE: catalog.JUDGE_NAME})
# In synthesis tables no_mtl stands for its single-task FES generator.
GENERATOR = _Live(lambda: {k: catalog.model(k).synthesis_name for k in catalog.generators()})

# The synthesis table's reference rows (fersnet.metrics.score.REFERENCE_ROWS).
SYNTHESIS_REFERENCE = {
    "copy_input": "Copy input",
    "real_target": "Real target",
}

EXPRESSION = {
    "neutral": "Neutral", "anger": "Anger", "contempt": "Contempt", "disgust": "Disgust",
    "fear": "Fear", "happy": "Happy", "sadness": "Sadness", "surprise": "Surprise",
}
EXPRESSION_SHORT = {
    "neutral": "Ne", "anger": "An", "contempt": "Co", "disgust": "Di",
    "fear": "Fe", "happy": "Ha", "sadness": "Sa", "surprise": "Su",
}
