"""params.yaml: load, merge the selected profile, validate.

`schema()` is the one description of every key (the allowed databases and models, the
`data.<db>` sections and the models' own sections come from fersnet/catalog.py). Validation runs
once at load and raises ConfigError naming the key and what is allowed, before any work starts.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from fersnet.device import CHOICES as DEVICES
from fersnet.errors import FersnetError

PROFILES = ("demo", "paper", "test")


class ConfigError(FersnetError):
    """A params.yaml problem, phrased for the user (names the key)."""


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key, line: int, first: int):
        self.key, self.line, self.first = key, line, first
        super().__init__(f"line {line}: duplicate key `{key}` (first at line {first})")


MERGE_TAG = "tag:yaml.org,2002:merge"


def _mapping_paths(node, prefix: str = "", seen=None):
    """(id of each mapping node, its dotted key path + '.') in a composed YAML document."""
    seen = set() if seen is None else seen
    if id(node) in seen:                                     # an alias: walked once
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        yield id(node), prefix
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG else ""
            yield from _mapping_paths(value, f"{prefix}{name}." if name else prefix, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _mapping_paths(item, f"{prefix.rstrip('.')}[{i}].", seen)


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (PyYAML silently keeps the last)."""

    def construct_document(self, node):
        self._paths = dict(_mapping_paths(node))             # to name a duplicate by its full key
        return super().construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:                    # `<<: *base` may be overridden on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(f"{self._paths.get(id(node), '')}{key}", line, seen[key])
                seen[key] = line
            except TypeError:                                # an unhashable key: SafeLoader reports it
                pass
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, source: str):
    """YAML text -> Python objects; a duplicate key is a ConfigError naming the key and its lines."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except _DuplicateKey as e:
        raise ConfigError(f"{source}: line {e.line}: duplicate key `{e.key}` (first at line {e.first}); "
                          "YAML would silently keep only the last value, so remove one") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML: {e}") from None


# --- leaf specs ---------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    kind: str                      # int, float, bool, str, choice, list, path, uri
    lo: float | None = None
    hi: float | None = None
    choices: tuple = ()
    item: "Spec | None" = None
    length: int | None = None
    nullable: bool = False
    lo_open: bool = False
    alternatives: tuple = ()       # kind "either": the first alternative that accepts the value

    def describe(self) -> str:
        if self.kind == "either":
            return " or ".join(a.describe() for a in self.alternatives)
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        if self.kind == "list":
            n = f"{self.length} " if self.length else ""
            return f"a list of {n}{self.item.describe()}"
        rng = ""
        if self.lo is not None or self.hi is not None:
            lo = "" if self.lo is None else (f"> {self.lo}" if self.lo_open else f">= {self.lo}")
            hi = "" if self.hi is None else f"<= {self.hi}"
            rng = " " + " and ".join(x for x in (lo, hi) if x)
        if self.kind == "uri":
            return ("null (the project's mlflow.db), sqlite:///<path to a .db file>, "
                    "http(s)://<host>[:port][/path] or a file: URI (file:///<absolute folder>)")
        base = {"int": "an integer", "float": "a number", "bool": "true or false",
                "str": "a string", "path": "a path"}[self.kind] + rng
        return base + (" or null" if self.nullable else "")


def Int(lo=None, hi=None, nullable=False):
    return Spec("int", lo=lo, hi=hi, nullable=nullable)


def Float(lo=None, hi=None, lo_open=False):
    return Spec("float", lo=lo, hi=hi, lo_open=lo_open)


def Choice(*choices):
    return Spec("choice", choices=tuple(choices))


def List(item, length=None):
    return Spec("list", item=item, length=length)


def Either(*alternatives):
    return Spec("either", alternatives=tuple(alternatives))


BOOL = Spec("bool")
MLFLOW_URI = Spec("uri", nullable=True)
PATH = Spec("path")
OPT_PATH = Spec("path", nullable=True)
PROB = Float(0.0, 1.0)
WEIGHT = Float(0.0)



def schema() -> dict[str, Any]:
    """The schema of params.yaml; the allowed databases and models, the `data.<db>` sections and
    the models' own sections (fes_da, stargan) come from the catalogue (fersnet/catalog.py)."""
    from fersnet import catalog
    head = {
        "profile": Choice(*PROFILES),
        "run_seeds": List(Int(0)),
        "databases": List(Choice(*catalog.database_keys())),
        "models": List(Choice(*catalog.model_keys())),
        "n_folds": Int(2, 50),
        "folds": {"rule": Choice("round_robin", "blocks")},
        "paths": {"results": PATH, "reports": PATH},
        "data": {**{key: dict(spec.params) for key, spec in catalog.DATABASES.items()},
                 "check_counts": Choice("warn", "error")},
    }
    return {**head, **BASE_SCHEMA, **catalog.model_sections(), **TAIL_SCHEMA}


# the sections every model and database shares; schema() puts the models' own sections after `train`
BASE_SCHEMA: dict[str, Any] = {
    "synth": {"out": PATH, "data_seed": Int(0), "subjects": Int(10, 500), "frames": Int(4, 60),
              "image_scale": Float(0.1, 1.0)},
    "preprocess": {"out": PATH, "size": Int(16, 512), "margin": Float(0.0, 1.0),
                   "grayscale": BOOL, "no_face": Choice("skip", "center"),
                   "on_bad_file": Choice("error", "skip")},
    "model": {"arch": Choice("paper", "r2021"), "width": Float(0.0, 4.0, lo_open=True), "convflu_kernel": Choice(1, 3),
              "condition": Choice("concat", "cin", "adain"), "output": Choice("direct", "residual")},
    "train": {
        "crop": Int(8, 512), "epochs": Int(1), "min_steps": Int(1, nullable=True), "batch_size": Int(1, 4096),
        "lr": Float(0.0, 1.0, lo_open=True), "betas": List(PROB, length=2),
        "weight_decay": WEIGHT, "lr_schedule": Choice("multistep", "linear", "constant"),
        "lr_milestones": List(Float(0.0, lo_open=True)), "lr_gamma": Float(0.0, 1.0, lo_open=True),
        "lr_decay_fraction": Float(0.0, 1.0, lo_open=True),
        "d_steps": Int(1, 20), "lambda_cls": WEIGHT, "lambda_adv": WEIGHT, "lambda_l1": WEIGHT,
        "lambda_cyc": WEIGHT, "lambda_expr": WEIGHT, "lambda_id": WEIGHT,
        "identity_net": OPT_PATH, "selection": Choice("last", "val"),
        "val_subjects": Float(0.0, 0.5, lo_open=True), "checkpoint_every": Int(1),
        "device": Choice(*DEVICES), "threads": Int(1, 256),
        "fused_adam": Choice("auto", "yes", "no"), "compile": Choice("auto", "yes", "no"),
        "fast_ops": Choice("auto", "yes", "no"), "compile_backend": Choice("inductor", "aot_eager", "eager"),
    },
}
TAIL_SCHEMA: dict[str, Any] = {
    "judge": {"epochs": Int(1), "min_steps": Int(1, nullable=True), "batch_size": Int(1, 4096), "lr": Float(0.0, 1.0, lo_open=True),
              "weight_decay": WEIGHT, "width": Float(0.0, 4.0, lo_open=True),
              "schedule": Choice("constant", "onecycle"), "label_smoothing": Float(0.0, 0.5),
              "tta_flip": BOOL},
    "fid": {"inception_weights": OPT_PATH, "require_inception": BOOL,
            "dims": Choice(64, 192, 768, 2048), "kid_subset": Int(2), "kid_subsets": Int(1, 10000),
            "batch_size": Int(1, 4096), "download": BOOL, "reference": Choice("test", "train")},
    "mlflow": {"enabled": BOOL, "uri": MLFLOW_URI, "log_jobs": BOOL, "log_checkpoints": BOOL,
               "experiment_prefix": Spec("str")},
    "orchestration": {"gpu_jobs_per_device": Int(1, 16), "folds_per_job": Int(1, 50)},
}


# --- validation ---------------------------------------------------------------
def _check_leaf(key: str, spec: Spec, value: Any) -> Any:
    def bad():
        return ConfigError(f"params: `{key}` is {value!r}; allowed: {spec.describe()}")

    if value is None:
        if spec.nullable:
            return None
        raise bad()
    k = spec.kind
    if k == "either":
        for alternative in spec.alternatives:
            try:
                return _check_leaf(key, alternative, value)
            except ConfigError:
                pass
        raise bad()
    if k == "bool":
        if not isinstance(value, bool):
            raise bad()
    elif k == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
    elif k == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        value = float(value)
    elif k in ("str", "path"):
        if not isinstance(value, str) or not value:
            raise bad()
    elif k == "uri":
        if not isinstance(value, str) or not _tracking_uri_ok(value):
            raise bad()
    elif k == "choice":
        if isinstance(value, bool) and {"yes", "no"} <= set(spec.choices):
            value = "yes" if value else "no"     # YAML 1.1 (PyYAML, Snakemake) reads yes/no as booleans
        if value not in spec.choices or isinstance(value, bool):
            raise bad()
    elif k == "list":
        if not isinstance(value, list) or (spec.length is not None and len(value) != spec.length):
            raise bad()
        return [_check_leaf(f"{key}[{i}]", spec.item, v) for i, v in enumerate(value)]
    if k in ("int", "float"):
        if spec.lo is not None and (value <= spec.lo if spec.lo_open else value < spec.lo):
            raise bad()
        if spec.hi is not None and value > spec.hi:
            raise bad()
    return value


def _tracking_uri_ok(uri: str) -> bool:
    """An MLflow store URI fersnet can use: SQLite file, HTTP(S) server or file store."""
    parts = urlsplit(uri)
    if parts.scheme == "sqlite":
        return uri.startswith("sqlite:///") and len(uri) > len("sqlite:///")
    if parts.scheme in ("http", "https"):
        return bool(parts.hostname)
    if parts.scheme == "file":
        return bool(parts.path) and parts.netloc in ("", "localhost")
    return False


def _validate(tree: Any, schema: dict, prefix: str = "", partial: bool = False) -> dict:
    if not isinstance(tree, dict):
        raise ConfigError(f"params: `{prefix.rstrip('.') or '<root>'}` must be a mapping, got {tree!r}")
    out = {}
    for key, value in tree.items():
        full = prefix + str(key)
        if key not in schema:
            raise ConfigError(f"params: unknown key `{full}`; allowed here: {', '.join(schema)}")
        spec = schema[key]
        out[key] = (_validate(value, spec, full + ".", partial) if isinstance(spec, dict)
                    else _check_leaf(full, spec, value))
    if not partial:
        missing = [prefix + k for k in schema if k not in tree]
        if missing:
            raise ConfigError(f"params: missing key(s) {', '.join(f'`{m}`' for m in missing)}")
    return out


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _semantic_checks(cfg: dict) -> None:
    seeds = cfg["run_seeds"]
    if not seeds:
        raise ConfigError("params: `run_seeds` is empty; give at least one run seed, e.g. run_seeds: [0]")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"params: `run_seeds` lists a seed twice ({seeds}); each seed is one repetition of the grid")
    if cfg["train"]["crop"] > cfg["preprocess"]["size"]:
        raise ConfigError(f"params: `train.crop` ({cfg['train']['crop']}) must not exceed "
                          f"`preprocess.size` ({cfg['preprocess']['size']})")
    _check_milestones(cfg["train"]["lr_milestones"])
    _check_identity(cfg["train"])
    from fersnet import catalog
    if not cfg["databases"]:
        raise ConfigError("params: `databases` is empty; allowed: a list of " + ", ".join(catalog.database_keys()))
    for model in cfg["models"]:
        source = catalog.model(model).fine_tunes
        if source and source not in cfg["models"]:
            raise ConfigError(f"params: `models` lists {model} without {source}; {model} fine-tunes {source}")


def _check_identity(tr: dict) -> None:
    """R2021's identity term needs a face-embedding network the user supplies (LightCNN-9 in R2021,
    whose weights are not distributed); without one, `train.lambda_id > 0` cannot be honoured."""
    if tr["lambda_id"] > 0 and not tr["identity_net"]:
        raise ConfigError(f"params: `train.lambda_id` is {tr['lambda_id']:g} but `train.identity_net` is null; "
                          "the identity loss needs a TorchScript face-embedding network you supply (R2021 used "
                          "LightCNN-9 features, not distributed): set `train.identity_net` to its file, or "
                          "`train.lambda_id` to 0.0 (docs/models.md, \"Identity loss\")")


def _check_milestones(milestones: list) -> None:
    """`train.lr_milestones` are fractions of the run's epochs; epochs (the former unit) are refused."""
    late = [m for m in milestones if m >= 1]
    if late:
        example = ", ".join(f"{m:g} of 500 epochs -> write {m / 500:g}" for m in late if 1 < m < 500) \
            or "150 of 500 epochs -> write 0.3"
        shown = "[" + ", ".join(f"{m:g}" for m in milestones) + "]"
        raise ConfigError(f"params: `train.lr_milestones` is {shown}; milestones are now fractions "
                          f"in (0, 1) of the run's epochs, not epochs (e.g. {example}); "
                          "the paper's 150 and 400 of 500 epochs are [0.3, 0.8]")


def wanted(setting: str, dev) -> bool:
    """An `auto | yes | no` key (train.fused_adam, compile, fast_ops) on a torch.device: `auto`
    means on CUDA only."""
    return setting == "yes" or (setting == "auto" and dev.type == "cuda")


def resolve(raw: dict, profile: str | None = None, source: str = "params.yaml") -> dict:
    """Validate a raw params mapping and return the resolved config of one profile."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    from fersnet.data import generic
    raw = generic.register(raw)        # databases defined in params alone (`data.<key>.layout`)
    profiles = raw.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"{source}: `profiles` must be a mapping of profile name -> overrides")
    from fersnet import catalog
    profiles = {k: dict(v) if isinstance(v, dict) else v for k, v in profiles.items()}
    _renamed_keys(raw, source)
    for name, part in profiles.items():
        if isinstance(part, dict):
            _renamed_keys(part, source, prefix=f"profiles.{name}.")
    for part in (raw, *(p for p in profiles.values() if isinstance(p, dict))):
        _plugin_keys(part)
    for name, values in catalog.section_defaults().items():
        raw.setdefault(name, copy.deepcopy(values))
    tree = schema()
    base = _validate(raw, tree)
    for name, over in profiles.items():
        if name not in PROFILES:
            raise ConfigError(f"params: unknown profile `profiles.{name}`; allowed: {', '.join(PROFILES)}")
        _validate(over or {}, tree, prefix=f"profiles.{name}.", partial=True)
    name = profile or base["profile"]
    if name not in PROFILES:
        raise ConfigError(f"params: profile {name!r} unknown; allowed: {', '.join(PROFILES)}")
    cfg = _validate(deep_merge(base, profiles.get(name) or {}), tree)
    cfg["profile"] = name
    _semantic_checks(cfg)
    return with_seed(cfg, cfg["run_seeds"][0])


def _renamed_keys(tree: dict, source: str, prefix: str = "") -> None:
    """Refuse the seed keys of earlier versions with their new spelling: `seed` (one seed), `seeds`
    (now `run_seeds`: each run trains, judges and scores at its seed) and `synth.seed` (now
    `synth.data_seed`: the stand-in's own seed)."""
    if "seed" in tree:
        raise ConfigError(f"{source}: `{prefix}seed` is now `{prefix}run_seeds`, a list of run seeds "
                          f"(run_seeds: [{tree['seed']}]); the stand-in's seed is `synth.data_seed`")
    if "seeds" in tree:
        raise ConfigError(f"{source}: `{prefix}seeds` is now `{prefix}run_seeds` (run_seeds: {tree['seeds']}); "
                          "each run trains, judges and scores at one of them")
    synth = tree.get("synth")
    if isinstance(synth, dict) and "seed" in synth:
        raise ConfigError(f"{source}: `{prefix}synth.seed` is now `{prefix}synth.data_seed` "
                          f"(data_seed: {synth['seed']}), the stand-in's own seed")


def _plugin_keys(tree: dict) -> None:
    """`models` entries naming an external model as `package.module:attr` -> its key (the model is
    loaded and registered in the catalogue; params_view writes the reference back)."""
    from fersnet import catalog
    entries = tree.get("models")
    if isinstance(entries, list):
        tree["models"] = [catalog.load_plugin(m).key if isinstance(m, str) and ":" in m else m for m in entries]


def with_seed(cfg: dict, seed: int) -> dict:
    """The config of one job of the seed fan-out: `cfg["seed"]` is the seed that job trains with.

    `seed` is not a params key (params list `run_seeds`); it is set here, by the CLI's `--seed` and
    by the workflow per job, and it is what the results' paths, fingerprints and RNG streams read.
    The first of `run_seeds` by default."""
    out = dict(cfg)
    out["seed"] = int(seed)
    return out


def params_view(cfg: dict) -> dict:
    """The resolved config as a params file (without the job's derived `seed`); an external model
    named in `models` by its `package.module:attr` reference is written as that reference."""
    from fersnet import catalog
    out = {k: v for k, v in cfg.items() if k != "seed"}
    if "models" in out:
        out["models"] = [catalog.model(m).ref or m if m in catalog.models() else m for m in out["models"]]
    return out


def fold_groups(cfg: dict) -> list[list[int]]:
    """The folds of one (database, model) split into jobs of `orchestration.folds_per_job` folds.

    One fold per job suits a GPU or a cluster; all folds in one process saves the start-up per
    job (imports, data) that dominates short CPU jobs (docs/orchestration.md).
    """
    n, size = int(cfg["n_folds"]), int(cfg["orchestration"]["folds_per_job"])
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def load(path: str | Path = "params.yaml", profile: str | None = None, overrides: dict | None = None) -> dict:
    """Read params.yaml, merge the profile (argument, else the file's `profile`) and validate.

    `overrides` (nested dict, e.g. from `--set train.epochs=300`) win over the base values and
    over the profile's, and are validated like the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    raw = read_yaml(path.read_text(), str(path))
    if overrides:
        raw = deep_merge(raw or {}, overrides)
        active = profile or raw.get("profile")
        block = (raw.get("profiles") or {}).get(active) if isinstance(raw.get("profiles"), dict) else None
        if isinstance(block, dict):
            raw["profiles"][active] = deep_merge(block, overrides)
    return resolve(raw or {}, profile, source=str(path))


def read_params(path: str | Path = "params.yaml") -> dict:
    """A params file read as plain data (read_yaml: no tags, no templating, no duplicate keys), not
    yet validated: what the Snakefile reads instead of Snakemake's `configfile:`, which would run
    the file through Snakemake's YAML templating (a value could run code). A ConfigError names the
    file when it is missing, not YAML, or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    raw = read_yaml(path.read_text(), str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values (found {type(raw).__name__})")
    return raw


def parse_sets(items: list[str] | None) -> dict:
    """`KEY.SUB=VALUE` strings (VALUE read as YAML: 300, 1.0e-4, cin, [1, 2], null) -> nested dict."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. train.epochs=300")
        parsed = read_yaml(value, f"--set {item!r}: the value") if value != "" else ""
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part} was already set to a value")
        node[leaf] = parsed
    return out


def dumps(cfg: dict) -> str:
    """The resolved config as stable JSON (saved with every run)."""
    return json.dumps(cfg, indent=2, sort_keys=True)
