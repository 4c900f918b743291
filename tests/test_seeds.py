"""Named seed streams (fersnet.seeds): one table, the values results were made with."""
from __future__ import annotations

import numpy as np
import pytest

from fersnet.seeds import STREAMS, stream


def seed_sequence(*parts: int) -> int:
    """numpy's SeedSequence state cut to 63 bits, written out independently of fersnet.seeds."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0]) >> 1


# (stream, seed, parts) -> the seed every result so far was made with
HISTORICAL = [
    (("init", 0, 0), 5228546342681945855),
    (("init", 3, 4), 721994511713179690),
    (("val_split", 0, 1), 5276725955892761082),
    (("fes_da", 2, 5), 4429277695412761595),
    (("epoch_plan", 0, 0, 1), 4324601099084218337),
    (("epoch_steps", 0, 0, 1), 4383729030133993156),
    (("epoch_plan", 1, 3, 7), 6740733380162919617),
    (("epoch_steps", 1, 3, 7), 4427080337234084394),
    (("judge", 0, 0), 0),
    (("judge", 5, 3), 5003),
    (("score", 2, 9), 2009),
    (("kid", 1, 4), 1004),
]


@pytest.mark.parametrize("args, value", HISTORICAL)
def test_each_stream_gives_the_seed_results_were_made_with(args, value):
    assert stream(*args) == value


def test_sequence_streams_are_seed_parts_then_their_id_and_thousand_streams_seed_times_1000_plus_part():
    for name, s in STREAMS.items():
        parts = (4, 11)[:len(s.parts)]
        expected = seed_sequence(3, *parts, s.id) if s.rule == "sequence" else 3 * 1000 + parts[0]
        assert stream(name, 3, *parts) == expected, name


def test_the_only_shared_seeds_are_numpys_trailing_zero_ones_epoch_plan_k_and_the_stream_with_id_k():
    """SeedSequence([s, f, k]) == SeedSequence([s, f, k, 0]): the fold streams with id k (init 2,
    val_split 3, fes_da 7) share their seed with `epoch_plan` of epoch k of the same fold (a torch
    Generator for that epoch's plan). Kept, since every result was made with it; any other
    coincidence is new and fails here."""
    seen: dict[int, list] = {}
    for seed in (0, 1):
        for fold in range(3):
            for name, s in STREAMS.items():
                if s.rule != "sequence":
                    continue
                for epoch in (range(1, 12) if len(s.parts) == 2 else [None]):
                    parts = (fold,) if epoch is None else (fold, epoch)
                    seen.setdefault(stream(name, seed, *parts), []).append((name, seed, *parts))
    shared = sorted(sorted(v) for v in seen.values() if len(v) > 1)
    expected = sorted(sorted([(name, seed, fold), ("epoch_plan", seed, fold, STREAMS[name].id)])
                      for seed in (0, 1) for fold in range(3) for name in ("init", "val_split", "fes_da"))
    assert shared == expected


def test_an_unknown_stream_or_a_wrong_number_of_parts_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown seed stream 'epoch'; known: epoch_plan"):
        stream("epoch", 0, 0)
    with pytest.raises(ValueError, match=r"'epoch_plan' takes the seed and \(fold, epoch\), got 1 part"):
        stream("epoch_plan", 0, 0)
