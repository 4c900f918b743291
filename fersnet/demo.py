"""The README's main job on the embedded default: synthesize the stand-in, then preprocess it.

(The orchestration issue extends this to the whole pipeline.)
"""
from __future__ import annotations

import sys

from fersnet import config
from fersnet.cli import main as cli


def main() -> int:
    cfg = config.load("params.yaml")
    if cli(["synth"]) != 0:
        return 1
    for db in cfg["databases"]:
        if cli(["preprocess", "--db", db]) != 0:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
