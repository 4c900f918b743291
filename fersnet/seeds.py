"""Named random streams: every seed a job draws from, derived from the job's seed in one place.

A job's seed (`--seed`, one of params `run_seeds`) is never used directly: each random choice draws
from a stream named for what it seeds, `stream(name, seed, *parts)`, whose parts (fold, epoch,
class) are listed in `STREAMS`. Two kinds of derivation are in use:

- `sequence`: numpy's SeedSequence of (seed, *parts, id) cut to 63 bits (`derive_seed`): streams
  that differ in any part or in their id are independent;
- `thousand`: seed * 1000 + part, the judge's and the scoring job's rule (a part below 1000).

docs/training.md ("Seeds") lists what each stream seeds. Changing a stream's id or rule changes
every result made from it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, fold, epoch, ...): independent streams per epoch."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class Stream:
    """One named stream: the parts it is derived from after the seed, its rule, what it seeds."""

    parts: tuple[str, ...]
    rule: str                 # "sequence" (derive_seed(seed, *parts, id)) or "thousand" (seed * 1000 + part)
    seeds: str                # what draws from it (docs/training.md, "Seeds")
    id: int | None = None     # the stream id closing a `sequence` derivation

    def derive(self, seed: int, parts: tuple[int, ...]) -> int:
        if self.rule == "sequence":
            return derive_seed(seed, *parts, self.id)
        (part,) = parts
        return int(seed) * 1000 + int(part)


STREAMS: dict[str, Stream] = {
    "epoch_plan": Stream(("fold", "epoch"), "sequence", "an epoch's batch plan: order, targets, crops, flips", 0),
    "epoch_steps": Stream(("fold", "epoch"), "sequence", "torch's global RNG inside an epoch's training steps", 1),
    "init": Stream(("fold",), "sequence", "a model's initial weights (torch's global RNG)", 2),
    "val_split": Stream(("fold",), "sequence", "the training subjects held out for `train.selection: val`", 3),
    "fes_da": Stream(("fold",), "sequence", "FES-DA's and its control's choice of faces and targets", 7),
    "judge": Stream(("fold",), "thousand", "the judge's initial weights, batch order, crops and flips"),
    "score": Stream(("fold",), "thousand", "torch's global RNG in the scoring job"),
    "kid": Stream(("class",), "thousand", "KID's random subsets of one target expression (every fold alike)"),
}


def stream(name: str, seed: int, *parts: int) -> int:
    """The seed of stream `name` for the job seed `seed` and the stream's parts (STREAMS), e.g.
    `stream("epoch_plan", seed, fold, epoch)`."""
    try:
        s = STREAMS[name]
    except KeyError:
        raise ValueError(f"unknown seed stream {name!r}; known: {', '.join(STREAMS)}") from None
    if len(parts) != len(s.parts):
        raise ValueError(f"seed stream {name!r} takes the seed and ({', '.join(s.parts)}), "
                         f"got {len(parts)} part(s)")
    return s.derive(int(seed), tuple(int(p) for p in parts))
