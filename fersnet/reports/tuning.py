"""The report's paragraph on how the settings were chosen (docs/decisions.md, "Settings chosen on
the stand-in's test folds").

Several defaults of the CPU demo were chosen by comparing results on the test folds of the
synthetic stand-in; `CHOSEN_ON_TEST_FOLDS` lists each of them with the value chosen, and the
paragraph states them with this run's value where it differs. On licensed data the pipeline
tunes nothing; a user tunes on validation subjects (docs/training.md, "Tuning a setting").
tests/test_report_tuning.py checks that every listed value is the demo profile's default.
"""
from __future__ import annotations

from fersnet import names, provenance
from fersnet.reports.tables import tex_escape

# (what was compared, ((params key, value chosen on the stand-in's test folds), ...))
CHOSEN_ON_TEST_FOLDS: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = (
    ("FES-DA's recipe", (("fes_da.real_share", 0.5), ("fes_da.epochs", 1))),
    ("FERSNet's learning-rate schedule", (("train.lr_schedule", "linear"), ("train.lr_decay_fraction", 0.5))),
    ("the demo's learning rate and step budget", (("train.lr", 2.0e-3), ("train.min_steps", 240))),
    ("how the generator takes the target",
     (("model.condition", "cin"), ("train.lambda_expr", 0.3), ("model.output", "residual"))),
    ("the judge's step budget, batch, flip averaging and schedule",
     (("judge.min_steps", 480), ("judge.batch_size", 16), ("judge.tta_flip", True), ("judge.schedule", "constant"))),
    ("the fast-operations default", (("train.fast_ops", "auto"),)),
)


def chosen_settings() -> list[tuple[str, object]]:
    """Every (params key, chosen value) of CHOSEN_ON_TEST_FOLDS, in order."""
    return [item for _, items in CHOSEN_ON_TEST_FOLDS for item in items]


def value_of(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def paragraph(cfg: dict) -> str:
    """The LaTeX body of the report's "How the settings were chosen" paragraph."""
    groups = []
    for what, items in CHOSEN_ON_TEST_FOLDS:
        shown = []
        for key, chosen in items:
            now = value_of(cfg, key)
            differs = "" if now == chosen else f" (this run: {tex_escape(_show(now))})"
            shown.append(f"\\texttt{{{tex_escape(key)}: {tex_escape(_show(chosen))}}}{differs}")
        groups.append(f"{what} ({', '.join(shown)})")
    stand_in = [names.DATABASE[db] for db in cfg["databases"] if provenance.is_stand_in(cfg, db)]
    licensed = [names.DATABASE[db] for db in cfg["databases"] if not provenance.is_stand_in(cfg, db)]
    text = ("These settings were chosen by looking at results on the test folds of the synthetic stand-in, "
            "where the default protocol has no validation split: " + "; ".join(groups) + ". ")
    if stand_in:
        text += (f"On {', '.join(stand_in)} this run uses the stand-in, whose test folds these choices were made on: "
                 "read its numbers as a check of the pipeline, not as tuned results. ")
    if licensed:
        text += (f"On {', '.join(licensed)} (a licensed copy) nothing was tuned by the pipeline: "
                 "every setting is the params file's, and no result of this data chose one. ")
    text += ("The pipeline itself tunes nothing and selects models by \\texttt{train.selection} "
             f"(here \\texttt{{{tex_escape(cfg['train']['selection'])}}}; \\texttt{{last}}: the last epoch, "
             "\\texttt{val}: the best epoch on validation subjects held out of the training subjects), "
             "never by the test fold; a setting tuned "
             "on licensed data should be compared on those validation subjects (docs/training.md, "
             "``Tuning a setting'').")
    return text
