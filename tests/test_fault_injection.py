"""Kill `kbh import`, `kbh split` (fresh and --overwrite) and an annotator session 20 times each at seeded random
points: every state left behind is the old one or the new one, never a mix (tests/fault_injection.py)."""

import pytest

from tests.fault_injection import run_all

KILLS = 20


@pytest.mark.parametrize("target", ["import", "split", "overwrite", "annotator"])
def test_killed_at_random_points_never_leaves_a_mix(target, tmp_path):
    (tally,) = run_all(KILLS, seed=0, work=tmp_path, targets=(target,))
    assert tally.kills >= KILLS
    assert not tally.mixed, tally.mixed
    assert sum(tally.states.values()) >= KILLS
