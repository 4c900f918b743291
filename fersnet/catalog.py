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

import importlib
from dataclasses import dataclass, field

from fersnet.config import BOOL, PATH, PROB, WEIGHT, Choice, Either, Float, Int, List, Spec
from fersnet.errors import FersnetError

JUDGE = "judge"                     # the fold's standard FER model; tracked and reported like a model
JUDGE_NAME = "Judge (ResNet-18)"
REFERENCE = "fersnet"               # the paired tests compare every FER model against this one


class CatalogError(FersnetError):
    """An unknown key, or a model or database entry that cannot be used."""


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

    @property
    def synthesis_name(self) -> str:
        return self.generator_name or self.name


@dataclass(frozen=True)
class DatabaseSpec:
    """One database: its names, reader and stand-in writer, classes and label codes, protocol.

    `reader` names `read(cfg, root, bad) -> Reading` (fersnet.data.readers), `writer`
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
    protocol_counts: tuple            # (labelled sequences, subjects) of the published protocol
    synth_code: int                   # its stream in the stand-in's random generator (never reuse one)
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


# --- lookups ------------------------------------------------------------------------------------
def model_keys() -> tuple[str, ...]:
    """Every model key, in the report's FER row order."""
    return tuple(MODELS)


def database_keys() -> tuple[str, ...]:
    return tuple(DATABASES)


def model(key: str) -> ModelSpec:
    try:
        return MODELS[key]
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
    return _picked([k for k, s in MODELS.items() if s.classifies], among)


def generators(among=None) -> list[str]:
    """Models with a generator of their own (scored, synthesis rows): the reference first."""
    keys = [k for k, s in MODELS.items() if s.synthesizes]
    keys.sort(key=lambda k: k != REFERENCE)
    return _picked(keys, among)


def fer_branch_generators() -> list[str]:
    """Models whose generator the expression loss can reach through a FER branch (train.lambda_expr)."""
    return [k for k, s in MODELS.items() if s.fer_branch]


def fine_tuned() -> list[str]:
    """Models that start from another model's run of the same fold."""
    return [k for k, s in MODELS.items() if s.fine_tunes]


def tracked_models(models=None) -> list[str]:
    """What MLflow and the workflow track per database: the models (all, or `models`) and the judge."""
    return list(MODELS if models is None else models) + [JUDGE]


def model_sections() -> dict:
    """The params sections the models bring (name -> schema), in catalogue order."""
    out: dict = {}
    for spec in MODELS.values():
        out.update(spec.sections)
    return out


def section_defaults() -> dict:
    """The values of the models' own sections that params.yaml may leave out (name -> values)."""
    out: dict = {}
    for spec in MODELS.values():
        out.update(spec.defaults)
    return out


def load(ref: str, what: str):
    """The object a `module:attribute` reference names; a CatalogError naming `what` if it cannot be loaded."""
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise CatalogError(f"{what}: cannot load {ref!r} ({type(e).__name__}: {e})") from None
    return obj
