"""The catalogue entry fersnet reads through the `fersnet.models` entry point.

Kept free of torch: fersnet reads it at every start; the task module is imported only by jobs.
"""
from fersnet.catalog import ModelSpec
from fersnet.config import Float, Int

SPEC = ModelSpec(
    key="tinycnn",                                   # results/<db>/tinycnn/..., params `models: [..., tinycnn]`
    name="Plain CNN",                                # its rows in the report's tables
    task="fersnet_tinycnn.model:TinyCNNTask",        # (key, cfg, n_classes, channels) -> Task
    classifies=True,                                 # FER accuracy rows and paired tests against FERSNet
    synthesizes=False,                               # no generator: nothing to score
    sections={"tinycnn": {"width": Int(1, 512), "dropout": Float(0.0, 0.9)}},   # its own params section
    reads=("tinycnn",),                              # part of its runs' fingerprint
    defaults={"tinycnn": {"width": 32, "dropout": 0.2}},                        # when params.yaml has no `tinycnn:`
)
