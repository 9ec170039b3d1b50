"""Group-disjoint splitting (pure functions, no I/O).

Persons (or, with `--by-sequence`, sequences) are indivisible, so the frame ratios asked for can only be
approximated. We pick the assignment of groups to splits whose frame fractions are closest to the ratios asked:

    cost = max_k |frames_k / N - r_k|  +  PERSON_WEIGHT * max_k |groups_k / G - r_k|

The second term only breaks near-ties in favour of sensible group counts (one group of 50 off costs 0.0002).
Small problems (splits ** groups <= EXACT_LIMIT) are solved exactly by enumeration; larger ones by seeded
random restarts, each followed by best-improvement local search over single moves and pairwise swaps (both
scored for all candidates at once with numpy). Everything random comes from `np.random.default_rng(seed)`, so
the result is a pure function of (groups, ratios, seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import KbhError

SPLIT_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}
PERSON_WEIGHT = 0.01
EXACT_LIMIT = 200_000
RESTARTS = 12
SWAP_LIMIT = 600  # above this many groups, local search uses moves only (the swap matrix is G x G x K)
ALGORITHM = "exact enumeration or seeded restarts + move/swap local search, minimising max frame-ratio deviation"


@dataclass(frozen=True)
class SplitResult:
    names: tuple[str, ...]
    assignment: dict[str, str]  # group id -> split name
    requested: tuple[float, ...]  # fractions, summing to 1
    frame_ratios: tuple[float, ...]
    group_ratios: tuple[float, ...]
    frame_counts: tuple[int, ...]
    group_counts: tuple[int, ...]
    method: str  # "exact" or "local-search"

    @property
    def max_frame_deviation(self) -> float:
        return max(abs(g - r) for g, r in zip(self.frame_ratios, self.requested))

    def groups_of(self, name: str) -> list[str]:
        return sorted(g for g, s in self.assignment.items() if s == name)


def parse_ratios(text: str) -> tuple[float, ...]:
    """'20/20/60' -> (0.2, 0.2, 0.6): train/val/test (or train/test for two parts), percentages summing to 100."""
    parts = str(text).replace(":", "/").replace(",", "/").split("/")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise KbhError(f"ratios {text!r}: expected percentages like 20/20/60 (train/val/test)") from None
    if len(values) not in SPLIT_NAMES:
        raise KbhError(f"ratios {text!r}: give 2 (train/test) or 3 (train/val/test) percentages, got {len(values)}")
    if any(v < 0 or not np.isfinite(v) for v in values):
        raise KbhError(f"ratios {text!r}: percentages must be non-negative numbers")
    if abs(sum(values) - 100.0) > 1e-6:
        raise KbhError(f"ratios {text!r}: percentages sum to {sum(values):g}, not 100")
    return tuple(v / 100.0 for v in values)


def split_names(n: int) -> tuple[str, ...]:
    return SPLIT_NAMES[n]


def split_groups(group_sizes: dict[str, int], ratios: tuple[float, ...], seed: int = 0,
                 restarts: int = RESTARTS) -> SplitResult:
    """Assign each group (person id -> number of eligible frames) to a split, closest to `ratios` (fractions)."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) not in SPLIT_NAMES:
        raise KbhError(f"need 2 or 3 ratios, got {len(ratios)}")
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise KbhError(f"ratios sum to {sum(ratios) * 100:g}%, not 100%")
    names = SPLIT_NAMES[len(ratios)]
    groups = sorted(group_sizes)  # sorted: the result must not depend on dict order
    sizes = np.array([int(group_sizes[g]) for g in groups], dtype=np.int64)
    if len(groups) == 0 or sizes.sum() <= 0:
        raise KbhError("no eligible frames to split")
    if (sizes <= 0).any():
        raise KbhError(f"group {groups[int(np.argmin(sizes))]!r} has no frames")
    active = [k for k, r in enumerate(ratios) if r > 0]
    if len(groups) < len(active):
        asked = "/".join(f"{r * 100:g}" for r in ratios)
        raise KbhError(f"{len(groups)} group(s) cannot fill {len(active)} non-empty splits ({asked}): "
                       f"each non-zero split needs at least one")
    target = np.array(ratios)
    rng = np.random.default_rng(seed)
    if len(active) ** len(groups) <= EXACT_LIMIT:
        labels, method = _exact(sizes, target, active, rng), "exact"
    else:
        labels, method = _local_search(sizes, target, active, rng, restarts), "local-search"
    k = len(ratios)
    fcount = np.bincount(labels, weights=sizes, minlength=k).astype(np.int64)
    gcount = np.bincount(labels, minlength=k).astype(np.int64)
    return SplitResult(
        names=names,
        assignment={g: names[int(l)] for g, l in zip(groups, labels)},
        requested=ratios,
        frame_ratios=tuple(float(c / sizes.sum()) for c in fcount),
        group_ratios=tuple(float(c) / len(groups) for c in gcount),
        frame_counts=tuple(int(c) for c in fcount),
        group_counts=tuple(int(c) for c in gcount),
        method=method,
    )


def cost_of(labels: np.ndarray, sizes: np.ndarray, target: np.ndarray) -> float:
    k = len(target)
    f = np.bincount(labels, weights=sizes, minlength=k) / sizes.sum()
    g = np.bincount(labels, minlength=k) / len(labels)
    return float(np.abs(f - target).max() + PERSON_WEIGHT * np.abs(g - target).max())


def _exact(sizes: np.ndarray, target: np.ndarray, active: list[int], rng) -> np.ndarray:
    """Enumerate every assignment of groups to the non-zero splits; ties broken by the seeded rng."""
    n, a = len(sizes), len(active)
    codes = np.arange(a ** n)
    digits = (codes[:, None] // (a ** np.arange(n))[None, :]) % a  # (assignments, groups)
    labels_all = np.asarray(active)[digits]
    k = len(target)
    onehot = labels_all[..., None] == np.arange(k)  # (A, n, k)
    f = (onehot * sizes[None, :, None]).sum(1) / sizes.sum()
    g = onehot.sum(1) / n
    cost = np.abs(f - target).max(1) + PERSON_WEIGHT * np.abs(g - target).max(1)
    cost[(g[:, active] == 0).any(1)] = np.inf  # every non-zero split needs a group
    best = np.flatnonzero(cost <= cost.min() + 1e-12)
    return labels_all[best[rng.integers(len(best))]].astype(np.int64)


def _local_search(sizes: np.ndarray, target: np.ndarray, active: list[int], rng, restarts: int) -> np.ndarray:
    best_labels, best_cost = None, np.inf
    for _ in range(max(1, restarts)):
        labels = _improve(_greedy_start(sizes, target, active, rng), sizes, target, active)
        c = cost_of(labels, sizes, target)
        if c < best_cost - 1e-12:
            best_labels, best_cost = labels, c
    return best_labels


def _greedy_start(sizes, target, active, rng) -> np.ndarray:
    """Groups in random order; each goes to the non-zero split furthest below its frame target."""
    n, k = len(sizes), len(target)
    labels = np.empty(n, dtype=np.int64)
    filled = np.zeros(k)
    goal = target * sizes.sum()
    order = rng.permutation(n)
    for rank, i in enumerate(order):
        if rank < len(active):  # seed every non-zero split with one group first
            kk = active[rank]
        else:
            deficit = (goal - filled)[active] / np.maximum(goal[active], 1e-9)
            kk = active[int(np.argmax(deficit))]
        labels[i] = kk
        filled[kk] += sizes[i]
    return labels


def _improve(labels, sizes, target, active) -> np.ndarray:
    """Best-improvement local search: the best single move or pairwise swap, until none improves the cost."""
    n, k = len(sizes), len(target)
    total = float(sizes.sum())
    w = sizes / total
    inactive = np.ones(k, dtype=bool)
    inactive[active] = False
    labels = labels.copy()
    use_swaps = n <= SWAP_LIMIT
    for _ in range(10 * n + 100):
        f = np.bincount(labels, weights=w, minlength=k)
        g = np.bincount(labels, minlength=k).astype(float)
        current = np.abs(f - target).max() + PERSON_WEIGHT * np.abs(g / n - target).max()
        onehot = (labels[:, None] == np.arange(k)).astype(float)  # (n, k)
        # Moves: group i leaves its split and joins split kk.
        f_mv = f[None, None, :] - (w[:, None] * onehot)[:, None, :] + (w[:, None, None] * np.eye(k)[None])
        g_mv = g[None, None, :] - onehot[:, None, :] + np.eye(k)[None]
        c_mv = np.abs(f_mv - target).max(2) + PERSON_WEIGHT * np.abs(g_mv / n - target).max(2)
        c_mv[labels[:, None] == np.arange(k)[None, :]] = np.inf  # not a move
        c_mv[:, inactive] = np.inf
        emptied = (g[labels] <= 1)  # leaving would empty a non-zero split
        c_mv[emptied] = np.inf
        best_move = np.unravel_index(np.argmin(c_mv), c_mv.shape)
        best = (c_mv[best_move], "move", best_move)
        if use_swaps:
            # Swaps: groups i and j (in different splits) trade places; group counts stay the same.
            d = w[:, None] - w[None, :]  # frames leaving i's split and joining j's
            f_sw = (f[None, None, :]
                    - d[..., None] * onehot[:, None, :]
                    + d[..., None] * onehot[None, :, :])
            c_sw = np.abs(f_sw - target).max(2) + PERSON_WEIGHT * np.abs(g / n - target).max()
            c_sw[labels[:, None] == labels[None, :]] = np.inf
            best_swap = np.unravel_index(np.argmin(c_sw), c_sw.shape)
            if c_sw[best_swap] < best[0]:
                best = (c_sw[best_swap], "swap", best_swap)
        if not best[0] < current - 1e-12:
            break
        if best[1] == "move":
            i, kk = best[2]
            labels[i] = kk
        else:
            i, j = best[2]
            labels[i], labels[j] = labels[j], labels[i]
    return labels


def group_shuffle_baseline(group_sizes: dict[str, int], ratios: tuple[float, ...], seed: int = 0) -> SplitResult:
    """scikit-learn's GroupShuffleSplit applied twice (test off the whole, then val off the rest): the baseline
    the benchmark compares against. Its test_size counts groups, not frames."""
    from sklearn.model_selection import GroupShuffleSplit

    groups = sorted(group_sizes)
    sizes = np.array([group_sizes[g] for g in groups])
    idx = np.arange(len(groups))
    names = SPLIT_NAMES[len(ratios)]
    labels = np.zeros(len(groups), dtype=np.int64)
    rest, test = next(GroupShuffleSplit(1, test_size=ratios[-1], random_state=seed).split(idx, groups=idx))
    labels[test] = len(ratios) - 1
    if len(ratios) == 3:
        sub = ratios[1] / (ratios[0] + ratios[1])
        tr, va = next(GroupShuffleSplit(1, test_size=sub, random_state=seed).split(rest, groups=rest))
        labels[rest[va]] = 1
    k = len(ratios)
    fcount = np.bincount(labels, weights=sizes, minlength=k).astype(np.int64)
    gcount = np.bincount(labels, minlength=k).astype(np.int64)
    return SplitResult(names, {g: names[l] for g, l in zip(groups, labels)}, tuple(ratios),
                       tuple(float(c / sizes.sum()) for c in fcount), tuple(float(c / len(groups)) for c in gcount),
                       tuple(int(c) for c in fcount), tuple(int(c) for c in gcount), "GroupShuffleSplit x2")
