"""The catalogue: every model and every database fersnet knows, described once.

Everything that depends on which models or databases exist is derived from here: params.yaml's
allowed values and the schema of the model's and the database's own sections (fersnet.config),
the CLI's choices, display names (fersnet.names), the params a job's fingerprint reads
(fersnet.provenance), the workflow's wildcards, per-database targets, scored and tracked lists,
and the report's rows and captions. A model or database added here appears in all of them.

Standard library plus fersnet.config only: Snakemake imports this at every start. The code that
builds a model's task, reads a database or writes its stand-in is named as `module:attribute`
and imported only when used.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from fersnet.config import BOOL, PATH, PROB, WEIGHT, Choice, ConfigError, Either, Float, Int, List, Spec

JUDGE = "judge"                     # the fold's standard FER model; tracked and reported like a model
JUDGE_NAME = "Judge (ResNet-18)"
REFERENCE = "fersnet"               # the paired tests compare every FER model against this one


class CatalogError(ConfigError):
    """An unknown key, or a model or database entry that cannot be used."""


ENTRY_POINTS = "fersnet.models"      # the entry-point group external models are found through


@dataclass(frozen=True)
class Origin:
    """Where an external model comes from; its `version` and `source` are part of its runs'
    fingerprint, so a new release or an edit of its code makes its results stale."""

    plugin: str                       # how it was named: the entry point or the `module:attr` reference
    dist: str | None                  # its distribution (None: a module on the path, not installed)
    version: str | None
    source: str                       # sha256 (16 hex) of the .py files of its top-level package


@dataclass(frozen=True)
class ModelSpec:
    """One model: what it is called, what it can do, how its task is built, what params it reads.

    `task` names a callable `(key, cfg, n_classes, channels) -> Task` (docs/extending.md: the task
    interface). `sections` are params sections of the model's own (name -> schema, validated with
    the rest of params.yaml); `reads` the sections besides `model` and `train` whose values its
    training depends on (its fingerprint's params, and the rule params that re-run it).
    """

    key: str
    name: str
    task: str
    classifies: bool = True          # predicts expressions: FER accuracy tables, paired tests
    synthesizes: bool = False        # has a generator of its own: scored by the judge, FID/KID
    fer_branch: bool = False         # its generator has a FER branch the expression loss can reach
    fine_tunes: str | None = None    # the model whose run of the same fold and seed it starts from
    control_of: str | None = None    # the model it is the control of (same steps, without the treatment)
    follows_arch: bool = False       # its networks follow `model.arch` (parameter counts per arch)
    generator_name: str | None = None  # its name in the synthesis tables (default: `name`)
    losses: str | None = None        # callable (key, cfg) -> [(short name, what, weight)] of its synthesis losses
    sections: dict = field(default_factory=dict)
    reads: tuple = ()
    defaults: dict = field(default_factory=dict)   # section -> its values when params.yaml lacks the section
    origin: Origin | None = None      # set for an external model (a plugin)
    ref: str | None = None            # the `module:attr` a params `models` entry named it by

    @property
    def synthesis_name(self) -> str:
        return self.generator_name or self.name


@dataclass(frozen=True)
class DatabaseSpec:
    """One database: its names, reader and stand-in writer, classes and label codes, protocol.

    `reader` names `read(cfg, root, bad) -> Reading` (fersnet.data.readers; one with the attribute
    `shared = True` serves several databases and is also given `db=`), `writer`
    `write(cfg, folder) -> dict` (fersnet.data.synth). `params` is the schema of its
    `data.<key>` section. `neutral_option` names the `data.<key>` switch that puts `neutral`
    first among the classes, where the database has one.
    """

    key: str
    name: str
    reader: str
    writer: str
    classes: tuple
    label_codes: dict
    frames: str                       # which frames of a sequence: "last" or "middle"
    alignment: str                    # "landmarks" (the database's own) or "detector"
    protocol_counts: tuple | None     # (labelled sequences, subjects) of the published protocol (None: unchecked)
    synth_code: int                   # its stream in the stand-in's random generator (never reuse one; -1: no stand-in)
    params: dict = field(default_factory=dict)
    neutral_option: str | None = None
    turned_views: bool = False        # sessions may be stored rotated or as two views side by side

    def class_list(self, cfg: dict) -> list[str]:
        """The class list (index = label) under the configured protocol."""
        on = self.neutral_option and cfg["data"][self.key][self.neutral_option]
        return (["neutral"] if on else []) + list(self.classes)


# --- the entries --------------------------------------------------------------------------------
_FERSNET_TASK = "fersnet.models.tasks:FersnetTask"
_FERSNET_LOSSES = "fersnet.models.registry:fersnet_losses"
_FES_DA_SECTION = {"fes_da": {"per_class": Either(Choice("all_targets", "balance"), Int(1)), "epochs": Int(1),
                              "lr": Float(0.0, 1.0, lo_open=True),
                              "real_share": Spec("float", lo=0.0, hi=0.95, lo_open=True, nullable=True)}}

# In the order of the report's FER rows: the paper's ablation (w/o MTL, w/o ConvFLU, FERSNet, w. FES-DA),
# FES-DA's real-only control just before it; the synthesis rows put the reference first.
MODELS: dict[str, ModelSpec] = {}
DATABASES: dict[str, DatabaseSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a model to the catalogue (or replace the entry of its key)."""
    if not spec.key.isidentifier() or spec.key == JUDGE:
        raise CatalogError(f"model key {spec.key!r}: must be a Python identifier other than {JUDGE!r}")
    MODELS[spec.key] = spec
    return spec


def register_database(spec: DatabaseSpec) -> DatabaseSpec:
    """Add a database to the catalogue (or replace the entry of its key)."""
    if not spec.key.isidentifier():
        raise CatalogError(f"database key {spec.key!r}: must be a Python identifier")
    DATABASES[spec.key] = spec
    return spec


for _spec in (
    ModelSpec("no_mtl", "FERSNet w/o MTL", _FERSNET_TASK, synthesizes=True, follows_arch=True,
              generator_name="Single-task FES", losses=_FERSNET_LOSSES),
    ModelSpec("no_convflu", "FERSNet w/o ConvFLU", _FERSNET_TASK, synthesizes=True, fer_branch=True,
              follows_arch=True, losses=_FERSNET_LOSSES),
    ModelSpec("fersnet", "FERSNet", _FERSNET_TASK, synthesizes=True, fer_branch=True, follows_arch=True,
              losses=_FERSNET_LOSSES),
    ModelSpec("fes_da_real", "FERSNet + fine-tuning on real faces", _FERSNET_TASK, fer_branch=True,
              fine_tunes="fersnet", control_of="fes_da", follows_arch=True, losses=_FERSNET_LOSSES,
              reads=("fes_da",)),
    ModelSpec("fes_da", "FERSNet w. FES-DA", _FERSNET_TASK, fer_branch=True, fine_tunes="fersnet",
              follows_arch=True, losses=_FERSNET_LOSSES, sections=_FES_DA_SECTION, reads=("fes_da",)),
    ModelSpec("stargan", "StarGAN", "fersnet.models.registry:stargan_task", classifies=False, synthesizes=True,
              losses="fersnet.models.registry:stargan_losses", reads=("stargan",),
              sections={"stargan": {"lr": Float(0.0, 1.0, lo_open=True), "betas": List(PROB, length=2),
                                    "n_critic": Int(1, 20), "lambda_cls": WEIGHT, "lambda_rec": WEIGHT,
                                    "lambda_gp": WEIGHT, "res_blocks": Int(1, 12),
                                    "lr_decay": Choice("none", "linear")}}),
):
    register_model(_spec)

_SIX = ("anger", "disgust", "fear", "happy", "sadness", "surprise")
for _spec in (
    # CK+ Emotion/*.txt: a single float code 0-7 (official ReadMe).
    DatabaseSpec("ckplus", "CK+", "fersnet.data.readers.ckplus:read", "fersnet.data.synth.ckplus:write",
                 classes=("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"),
                 label_codes={0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear",
                              5: "happy", 6: "sadness", 7: "surprise"},
                 frames="last", alignment="landmarks", protocol_counts=(327, 118), synth_code=1,
                 params={"root": PATH, "include_neutral": BOOL, "frames": Int(1, 30)},
                 neutral_option="include_neutral"),
    # Oulu-CASIA expression folder names -> our names.
    DatabaseSpec("oulu", "Oulu-CASIA", "fersnet.data.readers.oulu:read", "fersnet.data.synth.oulu:write",
                 classes=_SIX,
                 label_codes={"Anger": "anger", "Disgust": "disgust", "Fear": "fear",
                              "Happiness": "happy", "Sadness": "sadness", "Surprise": "surprise"},
                 frames="last", alignment="detector", protocol_counts=(480, 80), synth_code=2,
                 params={"root": PATH, "camera": Choice("VL", "NI"),
                         "lighting": Choice("Strong", "Weak", "Dark"), "frames": Int(1, 30)}),
    # MMI <Metatag Name="Emotion" Value="N"/>: 1-6 are the basic emotions (3P, see docs).
    DatabaseSpec("mmi", "MMI", "fersnet.data.readers.mmi:read", "fersnet.data.synth.mmi:write",
                 classes=_SIX,
                 label_codes={1: "anger", 2: "disgust", 3: "fear", 4: "happy", 5: "sadness", 6: "surprise"},
                 frames="middle", alignment="detector", protocol_counts=(205, 30), synth_code=3,
                 params={"root": PATH, "frames": Int(1, 30)}, turned_views=True),
):
    register_database(_spec)


# --- external models (plugins) -------------------------------------------------------------------
_discovered = False


def discover() -> None:
    """Register every model the installed distributions declare in the `fersnet.models` entry-point
    group (once per process). Each entry point names a ModelSpec; one that cannot be loaded is a
    CatalogError naming it, so that a broken plugin stops everything before any job starts."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINTS), key=lambda e: e.name):
        dist = getattr(ep, "dist", None)
        label = f"model plugin {ep.name!r} (entry point {ep.value}" + (
            f" of {dist.name} {dist.version})" if dist else ")")
        _register_plugin(ep.value, label, dist.name if dist else None, dist.version if dist else None)


def load_plugin(ref: str) -> ModelSpec:
    """The model a params `models` entry names as `package.module:attr` (a ModelSpec), registered."""
    discover()
    for spec in MODELS.values():
        if spec.ref == ref:
            return spec
    top = ref.partition(":")[0].split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    dist = dists[0] if dists else None
    version = importlib.metadata.version(dist) if dist else None
    return _register_plugin(ref, f"model plugin {ref!r}", dist, version, ref_name=ref)


def _register_plugin(ref: str, label: str, dist: str | None, version: str | None, ref_name=None) -> ModelSpec:
    if ":" not in ref:
        raise CatalogError(f"{label}: {ref!r} is not a `package.module:attr` reference")
    spec = load(ref, label)
    if not isinstance(spec, ModelSpec):
        raise CatalogError(f"{label}: names a {type(spec).__name__}, not a fersnet.catalog.ModelSpec")
    known = MODELS.get(spec.key)
    if known is not None and known.origin is None:
        raise CatalogError(f"{label}: its key {spec.key!r} is a built-in model's; pick another key")
    if known is not None and known.origin.plugin != ref:
        raise CatalogError(f"{label}: its key {spec.key!r} is taken by model plugin {known.origin.plugin!r}; "
                           "one of them must pick another key")
    if not (spec.classifies or spec.synthesizes) or spec.fine_tunes or spec.control_of:
        raise CatalogError(f"{label}: a plugin model classifies and/or synthesizes, and fine-tunes no other model")
    origin = Origin(plugin=ref, dist=dist, version=version, source=source_hash(spec.task.partition(":")[0]))
    return register_model(dataclasses.replace(spec, origin=origin, ref=ref_name))


def source_hash(module: str) -> str:
    """sha256 (16 hex) over the names and contents of the .py files of `module`'s top-level package
    (or of the module alone), found without importing it."""
    top = module.split(".")[0]
    try:
        found = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise CatalogError(f"model plugin module {module!r}: not found on the Python path")
    if found.submodule_search_locations:
        files = sorted(f for loc in found.submodule_search_locations for f in Path(loc).rglob("*.py"))
        base = Path(next(iter(found.submodule_search_locations)))
    else:
        files, base = [Path(found.origin)], Path(found.origin).parent
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(base) if f.is_relative_to(base) else f.name).encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def plugins(keys=None) -> list[ModelSpec]:
    """The external models among `keys` (default: all registered)."""
    return [s for k, s in models().items() if s.origin and (keys is None or k in keys)]


# --- lookups ------------------------------------------------------------------------------------
def models() -> dict[str, ModelSpec]:
    """Every model (built-in and discovered), key -> entry, in the report's FER row order."""
    discover()
    return MODELS


def model_keys() -> tuple[str, ...]:
    """Every model key, in the report's FER row order."""
    return tuple(models())


def database_keys() -> tuple[str, ...]:
    return tuple(DATABASES)


def model(key: str) -> ModelSpec:
    try:
        return models()[key]
    except KeyError:
        raise CatalogError(f"unknown model {key!r}; known: {', '.join(MODELS)}") from None


def database(key: str) -> DatabaseSpec:
    try:
        return DATABASES[key]
    except KeyError:
        raise CatalogError(f"unknown database {key!r}; known: {', '.join(DATABASES)}") from None


def _picked(keys, among) -> list[str]:
    return [k for k in keys if among is None or k in among]


def fer_models(among=None) -> list[str]:
    """Models that classify (FER rows), in row order; only those in `among` when given."""
    return _picked([k for k, s in models().items() if s.classifies], among)


def generators(among=None) -> list[str]:
    """Models with a generator of their own (scored, synthesis rows): the reference first."""
    keys = [k for k, s in models().items() if s.synthesizes]
    keys.sort(key=lambda k: k != REFERENCE)
    return _picked(keys, among)


def fer_branch_generators() -> list[str]:
    """Models whose generator the expression loss can reach through a FER branch (train.lambda_expr)."""
    return [k for k, s in models().items() if s.fer_branch]


def fine_tuned() -> list[str]:
    """Models that start from another model's run of the same fold."""
    return [k for k, s in models().items() if s.fine_tunes]


def tracked_models(models=None) -> list[str]:
    """What MLflow and the workflow track per database: the models (all, or `models`) and the judge."""
    return list(model_keys() if models is None else models) + [JUDGE]


def model_sections() -> dict:
    """The params sections the models bring (name -> schema), in catalogue order."""
    out: dict = {}
    for spec in models().values():
        out.update(spec.sections)
    return out


def section_defaults() -> dict:
    """The values of the models' own sections that params.yaml may leave out (name -> values)."""
    out: dict = {}
    for spec in models().values():
        out.update(spec.defaults)
    return out


def load(ref: str, what: str):
    """The object a `module:attribute` reference names; a CatalogError naming `what` if it cannot be loaded."""
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except Exception as e:  # noqa: BLE001 - whatever importing someone's module raises, named in one line
        detail = (str(e).splitlines() or [""])[0][:200]
        raise CatalogError(f"{what}: cannot load {ref!r} ({type(e).__name__}: {detail})") from None
    return obj
