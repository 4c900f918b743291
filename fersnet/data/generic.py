"""Databases defined in params.yaml alone: a `data.<key>` section with a `layout` (docs/extending.md,
"A database without code"; docs/datasets/generic.md).

    data:
      mydb:
        layout: folders          # root/<subject>/<expression>/<images>; or `manifest` (a CSV)
        root: /data/MyDB
        classes: [anger, disgust, fear, happy, sadness, surprise]

`register(raw)` turns every such section into a catalogue entry (fersnet.catalog.DatabaseSpec) read
by fersnet.data.readers.generic: faces cropped by the detector (no landmarks), the fold rule over
ascending subject IDs, the same skip-and-list checks as the native readers. It runs where params
become a resolved config (fersnet.config.resolve), so the CLI, the workflow and the report all see
the database. Standard library, fersnet.catalog and fersnet.config only: Snakemake imports this at
every start.
"""
from __future__ import annotations

import copy

from fersnet import catalog
from fersnet.config import Choice, ConfigError, Int, List, Spec

LAYOUTS = ("folders", "manifest")
READER = "fersnet.data.readers.generic:read"
WRITER = "fersnet.data.readers.generic:no_stand_in"

# The schema of a generic `data.<key>` section; the keys after `classes` may be left out (DEFAULTS).
PARAMS = {
    "layout": Choice(*LAYOUTS),
    "root": Spec("path"),
    "classes": List(Spec("str")),
    "manifest": Spec("path", nullable=True),      # layout manifest: the CSV (relative paths: under root)
    "frames": Int(1, 1000, nullable=True),        # null: every image is one sample; N: last N of a sequence
    "name": Spec("str", nullable=True),           # display name (default: the key)
    "counts": Spec("list", item=Int(1), length=2, nullable=True),   # [sequences, subjects] to check against
}
DEFAULTS = {"manifest": None, "frames": None, "name": None, "counts": None}
# The workflow's own rule names (Snakefile, workflow/rules/*.smk): a database key is also a rule
# (`snakemake <key>`), so it must not be one of these (tests/test_generic_db.py keeps the list whole).
WORKFLOW_RULES = ("all", "all_folds", "all_reports", "all_scores", "folds_manifest", "pool", "preprocess",
                  "report", "scores_manifest", "synth", "track_init", "track_parent")
WORKFLOW_RULE_PREFIXES = ("train_fold", "judge_fold", "score_fold")


def is_generic(key, section) -> bool:
    """Whether `data.<key>` defines a database of its own: a mapping with `layout`, not a built-in key."""
    builtin = key in catalog.DATABASES and catalog.DATABASES[key].reader != READER
    return isinstance(section, dict) and "layout" in section and not builtin


def register(raw: dict) -> dict:
    """Register every generic database `raw["data"]` (and each profile's `data`) defines, and forget
    those an earlier params file of this process defined and this one does not; returns `raw` with
    their optional keys filled in (a copy; `raw` itself is not changed)."""
    raw = dict(raw)
    parts = [raw]
    if isinstance(raw.get("profiles"), dict):
        raw["profiles"] = {k: dict(v) if isinstance(v, dict) else v for k, v in raw["profiles"].items()}
        parts += [p for p in raw["profiles"].values() if isinstance(p, dict)]
    defined = set()
    for part in parts:
        if not isinstance(part.get("data"), dict):
            continue
        part["data"] = copy.deepcopy(part["data"])
        for key, section in part["data"].items():
            if is_generic(key, section):
                for k, v in DEFAULTS.items():
                    section.setdefault(k, v)
                catalog.register_database(spec(key, section))
                defined.add(key)
    for key in [k for k, s in catalog.DATABASES.items() if s.reader == READER and k not in defined]:
        del catalog.DATABASES[key]
    return raw


def spec(key, section: dict) -> catalog.DatabaseSpec:
    """The catalogue entry of a generic `data.<key>` section; a ConfigError names the key at fault."""
    where = f"data.{key}"
    if not isinstance(key, str) or not key.isidentifier() or not key.islower():
        raise ConfigError(f"params: `{where}`: a database key must be a lower-case Python identifier "
                          "(letters, digits, underscores), e.g. mydb")
    if key in WORKFLOW_RULES or key.startswith(WORKFLOW_RULE_PREFIXES):
        raise ConfigError(f"params: `{where}`: {key!r} is the name of a workflow step (`snakemake {key}`); "
                          "pick another database key")
    classes = section.get("classes")
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) and c.strip() == c and c for c in classes)):
        raise ConfigError(f"params: `{where}.classes` is {classes!r}; allowed: a list of at least two class "
                          "names (the expression folder names or the manifest's `expression` values)")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"params: `{where}.classes` lists a class twice ({classes})")
    layout, manifest = section.get("layout"), section.get("manifest")
    if layout == "manifest" and not manifest:
        raise ConfigError(f"params: `{where}.manifest` is missing; layout `manifest` needs the CSV file "
                          "(columns path, subject, expression; optional sequence, frame)")
    if layout == "folders" and manifest:
        raise ConfigError(f"params: `{where}.manifest` is set but `{where}.layout` is `folders`; "
                          "set layout: manifest to read the CSV, or remove the manifest key")
    name = section.get("name") or key
    counts = section.get("counts")
    return catalog.DatabaseSpec(
        key, name if isinstance(name, str) else key, READER, WRITER, classes=tuple(classes),
        label_codes={c: c for c in classes}, frames="last", alignment="detector",
        protocol_counts=tuple(counts) if isinstance(counts, list) else None,
        synth_code=-1, params=dict(PARAMS))
