"""Restarts that reach the best optimum: a pool of diverse starts and em-EM.

EM converges to a local maximum that depends on where it starts. The strategy here is
Biernacki, Celeux & Govaert's (2003) "em-EM": many **short** EM runs from diverse starts (a few
iterations each), then the best few of them (by log-likelihood) **continued** to convergence.
The first cut is by the likelihood after one iteration, which misranks slow starters (a start
ranked tenth there was first after ten iterations, 49.5 nats above the rest, on the simulated
correlated data): the next few get a second iteration, and go on if they then rank among the
screened ones (``Strategy.n_reserve``). Ten iterations misrank slow starters too, so the short
runs kept first run to a loose convergence (``Strategy.n_loose``), the best then to the tight one.
A start that fails (a component collapsing onto too few points, a singular covariance) is
dropped, never fatal, as long as one start survives: when every run continued to convergence
fails, the next surviving one is continued.

The starts are hard partitions (or responsibilities) of the rows, so one pool serves every
covariance model and, through :func:`partition_pool`, every number of components ``K``:

- ``hc``: mclust's default, model-based hierarchical agglomeration (VVV criterion) on the scaled
  SVD of the data (:mod:`bayesgmm._hierarchical`); the merges are computed once and cut at
  every ``K``;
- ``kmeans``: Lloyd's k-means from k-means++ seeds, several seeds per ``K``, alternately on
  standardised features and on the data in its own units (one common scale for all features:
  the geometry of the models that are not invariant to each feature's units, e.g. VII); in
  each geometry the partition of least within-cluster sum of squares is ``kmeans-best``
  (the start scikit-learn's ``GaussianMixture`` takes from k-means), always continued;
- ``random``: random responsibilities (uniform, normalised per row);
- ``split``: for ``K > 1``, the maximum-a-posteriori partition of the same model's fit at
  ``K - 1`` with one of its clusters split in two along its principal axis
  (:func:`split_starts`), the "split" move of incremental EM; and, once every K is fitted, a
  second pass from the ``K + 1`` fit with two clusters merged
  (:func:`bayesgmm._sweepmoves.merge_pass`).

Identical partitions (e.g. k-means agreeing with the hierarchical cut) are run once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.utils import check_random_state

from ._dask import is_dask_array
from ._hierarchical import MAX_SAMPLES, cut_tree, merge_tree, transform
from ._models import inestimable, min_effective_size, model_name
from ._progress import progress_bar
from ._sweepmoves import (
    canonical,
    merge_pass,
    one_hot,
    parent_strategy,
    rescue_starts,
    split_starts,
    top_merges,
    top_parent,
)

__all__ = [
    "Strategy",
    "canonical",
    "em_em",
    "partition_pool",
    "pool_data",
    "split_starts",
    "sweep_rows",
    "sweep_starts",
]


@dataclass(frozen=True)
class Strategy:
    """How many starts of each kind, and how em-EM spends them.

    Attributes
    ----------
    n_kmeans : int
        k-means starts per ``K`` (seeds drawn from the sweep's ``random_state``), alternately on
        standardised features and on the data's own units.
    n_random : int
        Random-responsibility starts per ``K``.
    n_split : int
        Split starts per ``K`` from the same model's ``K - 1`` fit (its largest clusters; by
        default each in turn: a small cluster's split was the best start of cells whose pool
        had none in the best basin, e.g. thyroid EEE K=8, K=9, 8 and 15 nats higher).
    n_cross : int
        Starts per ``K`` from the partitions of the other models' fits at ``K`` (those with the
        highest log-likelihood): an optimum of one model is often a good start for another.
    n_screened : int
        Starts that go on to a short run: the ones with the highest log-likelihood after one
        iteration (many k-means starts cost one iteration each).
    n_reserve : int
        Starts ranked just below the ``n_screened`` after the screening iteration that get
        ``reserve_iter - 1`` more (one-iteration likelihoods misrank slow starters): those
        that then rank among the ``n_screened`` best of both groups have a short run too,
        and go on with the screened ones as ``promote_within`` says.
        An addition to the screened starts, never a replacement, so from the same starts the
        optimum reached is never lower than without reserve. 0: no reserve.
    reserve_iter : int
        Iterations, the screening one included, after which the reserve is ranked with the
        screened starts (at most ``short_iter + 1``).
    promote_within : int
        A promoted start whose short run beats every screened one's goes on with them (to the
        loose stage, competing for the ``n_best`` continued); one that ranks among the
        ``promote_within`` best of itself and the screened short runs kept goes on too, as
        an addition: to the loose stage, and to convergence where the loose stage ranks it
        among the ``n_best``, beside the ``n_best`` that would be continued without it (so
        from the same starts the optimum is never lower). 1: only the first kind, the rule
        before, with which wine (held out) VVI K=4 ended 16.3 nats below scikit-learn's
        optimum (seed 2): its basin's split start was promoted, second of all short runs
        after the short run, and dropped.
    short_iter : int
        Iterations of each short run, after the screening one.
    n_best : int
        Short runs continued to convergence (the ones with the highest log-likelihood, after
        the loose stage when there is one).
    always : tuple of str
        Kinds of start always continued to convergence whatever their short run gave: by
        default mclust's hierarchical start, so the sweep never ends below the optimum mclust
        reaches from the same start, and the random-responsibility start. A random start
        begins near the data's overall mean and covariance and climbs slowly, so one
        iteration, ten, and a loose convergence all rank it last, yet it converges to basins
        the partitions miss: without it (and with ``n_merge=2``), the sweep (seed 0) ended Old
        Faithful VVI K=6 1.46 nats and banknote VII K=8 0.54 nats below the better of mclust
        and scikit-learn;
        continuing it costs about a fifth more EM iterations
        (``benchmarks/results/mclust_optima_20261204.txt``). And the k-means partition of
        least within-cluster sum of squares in each geometry (``kmeans-best``): a k-means
        start can climb slowly and pass every other run only near convergence (robustbase
        ``radarImage``, 1573 x 5, EEE K=9: the starts of the best basin ranked 15th-16th of
        20 after one iteration and 17th-18th after the short run, the sweep ended 90 nats
        below its best and 26 below scikit-learn's best of ten, K=7 13 below, at seeds 0-2;
        with them continued no cell of it is below either); +20% EM iterations over the
        benchmark and nine held-out sets, and the cells it moves go both ways (seeds 0-2:
        ``benchmarks/results/mclust_kmeans_best_20261206.txt``).
    n_loose : int
        When above ``n_best``, the loose stage: this many short runs (the best, and the
        promoted ones) run on until one iteration raises the log-likelihood per observation
        by less than ``loose_tol``; the ``n_best`` best of them then go on to convergence.
        Ten iterations misrank slow starters; a loose convergence much less (measured, with
        its cost: ``benchmarks/results/mclust_optima.txt``). At most ``n_best``: none.
    loose_tol : float
        The loose stage's tolerance on the per-observation log-likelihood's rise per
        iteration (scikit-learn's ``GaussianMixture`` stops at 1e-3).
    n_merge : int
        The sweep's merge pass (:func:`bayesgmm._sweepmoves.merge_pass`): every model at K
        refitted from its ``K + 1`` fit with two clusters merged (``merge_pairs``), the
        ``n_merge`` best after one iteration to a short run, the best of them continued; kept
        where higher (the fit at K is a start too, so nothing else runs to convergence
        unless it passes that fit). 0: no merge pass. Six, not two: the merge that reaches
        Old Faithful VVI K=6's best basin ranked sixth after one iteration (with two, the
        sweep ended 1.46 nats below scikit-learn at seeds 2, 3 and 6 of 0-7 and 1.01 at seed
        5; with six, at seed 5 only); +14-15% EM iterations and +4-9% CPU time over the
        benchmark and eight held-out sets, seeds 0-2, no cell newly below the bar
        (``benchmarks/results/mclust_optima_20261204.txt``).
    merge_pairs : int
        The merge pass's starts per fit: the pairs of the ``K + 1`` fit's clusters whose
        responsibilities overlap most (:func:`bayesgmm._sweepmoves.overlapping_pairs`), or
        every pair (0, the default). Every pair is ~2,300 of a 14-model sweep's ~4,800
        starts (up to 45 a fit at K = 9); 15 pairs screen ~3,700 and kept, over seeds 0-2,
        the same cells above issue 13's bar on the benchmark sets and eight held-out ones,
        but saved only 4% of the EM iterations (CPU within the noise) while 5-9 cells a
        seed ended lower than with every pair (up to 12.6 nats: thyroid EEV K=4), so the
        default screens every pair; 6 pairs lost banknote VII K=8 and VVI K=9 at seeds 1-2
        (``benchmarks/results/mclust_emstarts_20261203.txt``). Ward's criterion instead of
        the overlap missed wreath VII K=8 (its winning pair first by overlap).
    split_min : int
        Split starts only where both halves have ``split_min`` times the model's smallest
        sound component (:func:`bayesgmm._models.min_effective_size`); without, splitting
        every cluster doubled the collapsed fits (benchmark sets, seed 0: 19 -> 39; 16).
    top_parent : bool
        With the merge pass, the sweep's largest K gets merge starts too: from a fit at
        ``K + 1`` made only for them (:func:`bayesgmm._sweepmoves.parent_strategy`; its row
        is not in the table). Without, the largest K had no merge starts (wreath EEE K=9:
        20.9 nats below scikit-learn's best of ten).
    """

    n_kmeans: int = 10
    n_random: int = 1
    n_split: int = 9
    n_cross: int = 3
    n_screened: int = 6
    n_reserve: int = 6
    reserve_iter: int = 2
    promote_within: int = 6
    short_iter: int = 10
    n_best: int = 2
    always: tuple[str, ...] = ("hc", "random", "kmeans-best")
    n_loose: int = 6
    loose_tol: float = 3e-4
    n_merge: int = 6
    merge_pairs: int = 0
    split_min: int = 2
    top_parent: bool = True


def _kmeans_pp(X: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """k-means++ seeds (Arthur & Vassilvitskii 2007): ``k`` rows drawn by squared distance."""
    centres = [X[rng.randint(X.shape[0])]]
    closest = np.sum((X - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = closest.sum()
        if not total > 0:  # fewer distinct rows than k: any row
            index = rng.randint(X.shape[0])
        else:
            index = int(np.searchsorted(np.cumsum(closest), rng.uniform() * total))
            index = min(index, X.shape[0] - 1)
        centres.append(X[index])
        closest = np.minimum(closest, np.sum((X - X[index]) ** 2, axis=1))
    return np.array(centres)


def kmeans_labels(
    X: np.ndarray, k: int, rng: np.random.RandomState, max_iter: int = 100
) -> np.ndarray:
    """Lloyd's k-means from k-means++ seeds; an emptied cluster takes the farthest row."""
    centres = _kmeans_pp(X, k, rng)
    norms = np.sum(X**2, axis=1)
    labels = np.full(X.shape[0], -1)
    for _ in range(max_iter):
        distances = norms[:, None] - 2.0 * X @ centres.T + np.sum(centres**2, axis=1)
        new = np.argmin(distances, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        if counts.all():  # every cluster's mean, its rows added in order (as X[members].mean)
            sums = np.zeros_like(centres)
            np.add.at(sums, labels, X)
            centres = sums / counts[:, None]
            continue
        for c in range(k):
            members = labels == c
            if members.any():
                centres[c] = X[members].mean(axis=0)
            else:
                far = int(np.argmax(distances[np.arange(X.shape[0]), labels]))
                centres[c], labels[far] = X[far], c
    return labels


def partition_pool(
    X: np.ndarray, ks: list[int], strategy: Strategy, random_state: Any
) -> dict[int, list[tuple[str, np.ndarray]]]:
    """Starting responsibilities for every ``K`` in ``ks``, shared by every model.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated data in the user's units.
    ks : list of int
        The numbers of components.
    strategy : Strategy
    random_state : int, RandomState instance or None

    Returns
    -------
    dict
        ``K -> [(kind, resp), ...]``: distinct starts, the hierarchical one first.
    """
    rng = check_random_state(random_state)
    n_samples = X.shape[0]
    rows = np.arange(n_samples)
    if n_samples > MAX_SAMPLES:
        rows = rng.choice(n_samples, MAX_SAMPLES, replace=False)
    hc_ks = [k for k in ks if k <= rows.size]
    hc = None
    try:
        hc = cut_tree(merge_tree(transform(X[rows], "SVD")), hc_ks) if hc_ks else None
    except (ValueError, ArithmeticError):  # e.g. a feature constant in the subset
        hc = None
    centred = X - X.mean(axis=0)
    # k-means in two geometries: standardised features (the scale-free models') and the data's
    # own units up to one common factor (the geometry of EII, VII, EEV, ... which are not)
    spaces = (centred / X.std(axis=0), centred / np.sqrt(np.mean(X.var(axis=0))))
    pool: dict[int, list[tuple[str, np.ndarray]]] = {}
    for k in ks:
        found: list[tuple[str, np.ndarray, np.ndarray | None]] = []
        if hc is not None and k in hc_ks:
            found.append(("hc", hc[:, hc_ks.index(k)], None if rows.size == n_samples else rows))
        found += _kmeans_starts(spaces, k, strategy.n_kmeans, rng)
        if k == 1:
            found = [("hc", np.zeros(n_samples, dtype=np.int64), None)]
        pool[k] = _distinct(found, k, n_samples)
        for _ in range(strategy.n_random if k > 1 else 0):
            resp = rng.uniform(size=(n_samples, k))
            pool[k].append(("random", resp / resp.sum(axis=1, keepdims=True)))
    return pool


def _kmeans_starts(spaces: tuple, k: int, n: int, rng: np.random.RandomState) -> list[tuple]:
    """``n`` k-means partitions, alternately in each of ``spaces``; in each space the one of
    least within-cluster sum of squares (the first of equals) is of kind ``"kmeans-best"``
    (``Strategy.always`` continues it), the others ``"kmeans"``."""
    found, inertia = [], []
    for i in range(n):
        Z = spaces[i % len(spaces)]
        labels = kmeans_labels(Z, k, rng)
        found.append(["kmeans", labels, None])
        full = np.unique(labels).size == k  # (one with an empty cluster is not a start)
        inertia.append(_within_ss(Z, labels, k) if full else np.inf)
    for space in range(min(n, len(spaces))):
        ours = list(range(space, n, len(spaces)))
        best = ours[int(np.argmin([inertia[i] for i in ours]))]
        if np.isfinite(inertia[best]):
            found[best][0] = "kmeans-best"
    return [tuple(start) for start in found]


def _within_ss(Z: np.ndarray, labels: np.ndarray, k: int) -> float:
    """The k-means objective of ``labels`` on ``Z``: the sum of squared distances of the rows
    to their cluster's mean."""
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros((k, Z.shape[1]))
    np.add.at(sums, labels, Z)
    means = sums / np.maximum(counts, 1)[:, None]
    return float(np.sum((Z - means[labels]) ** 2))


def _distinct(
    found: list[tuple[str, np.ndarray, np.ndarray | None]], k: int, n_samples: int
) -> list[tuple[str, np.ndarray]]:
    """The partitions with ``k`` non-empty clusters, each once, as responsibilities; a
    ``kmeans`` start found again as ``kmeans-best`` becomes ``kmeans-best``."""
    seen: dict[bytes, int] = {}
    out = []
    for kind, labels, subset in found:
        key = canonical(labels).tobytes() + (b"" if subset is None else subset.tobytes())
        if key in seen:
            if kind == "kmeans-best" and out[seen[key]][0] == "kmeans":
                out[seen[key]] = (kind, out[seen[key]][1])
        elif np.unique(labels).size == k:
            seen[key] = len(out)
            out.append((kind, one_hot(labels, k, n_samples, subset)))
    return out


def em_em(
    start: Any,
    advance: Any,
    resps: list[tuple[str, np.ndarray]],
    strategy: Strategy,
    map_runs: Any = map,
    advance_many: Any = None,
    start_many: Any = None,
    sound: Any = None,
) -> Any:
    """Biernacki et al.'s em-EM: short runs from every start, the best continued.

    Parameters
    ----------
    start : callable
        ``start(resp)`` returns a new run (the parameters of one M-step from ``resp``).
    advance : callable
        ``advance(run, n_iter)`` runs at most ``n_iter`` more EM iterations (none once the run
        has converged), updating ``run`` in place (its ``lower_bound``, ``n_iter``,
        ``converged`` and, read by the loose stage, ``trace``).
    resps : list of (str, ndarray)
        The starts, as from :func:`partition_pool`.
    strategy : Strategy
    map_runs : callable
        ``map_runs(function, runs)``: ``function`` applied to every run continued to
        convergence, results in the runs' order (the builtin ``map``, or a thread pool's: the
        runs are independent, so the result does not depend on how they are scheduled).
    advance_many, start_many : callable, optional
        ``advance`` of a stage's runs at once (``advance_many(runs, n_iter, map_runs)``, each
        run's error or None) and ``start`` of all starts at once (a run or an error each), in
        place of those (:class:`bayesgmm._population.Population`: one compiled call each).
    sound : callable, optional
        ``sound(run)``: no variance of the run is held up by the ``reg_covar`` floor (at it,
        or rescaled from it by the model's constraints). A run found not
        sound after a stage (the stage's best runs are checked, see :func:`_dropping_spikes`)
        is dropped there, as a start whose covariance turns singular is without
        ``reg_covar``, and kept aside. When every start is at the floor after the screening
        iteration (linearly dependent columns put every fit there), em-EM goes on with them
        as without ``sound``; when the runs of a later stage all fail, the best of those kept
        aside (by log-likelihood when dropped) is continued and returned. Such a run climbs
        to a spike on a few rows, where the likelihood would grow without bound; kept, spikes
        won every cell of EVE and VVE at K >= 4 on UCI's wine (178 x 13, the default
        ``reg_covar``) over sound fits, and their climbs to the floor cost most of the time.

    Returns
    -------
    run
        The continued run with the highest log-likelihood; ``run.kind`` names its start.

    Raises
    ------
    ValueError or ArithmeticError
        The first start's error, when every start failed (one that was not only at the
        floor, if there is one).
    """
    plain = step = advance_many or _per_run(advance)
    spikes: list = []
    if sound is not None:
        step = _dropping_spikes(plain, sound, spikes, strategy.n_screened + strategy.n_reserve)
    errors: list[Exception] = []
    runs = _start_runs(start_many or _per_start(start), resps, errors)
    runs = _advance_all(step, runs, 1, errors)  # screening: one iteration each
    if not runs and spikes:  # every start at the floor (e.g. dependent columns): em-EM as without
        runs, step = sorted(spikes, key=lambda r: r.lower_bound, reverse=True), plain
        spikes.clear()
    screened, promoted = _screen(step, runs, strategy, errors)
    more = max(strategy.short_iter + 1 - _reserve_iter(strategy), 0)  # the rest of the short run
    runs = _advance_all(step, screened, more, errors)
    promoted = _advance_all(step, promoted, more, errors)
    runs = _continue(step, runs, promoted, strategy, errors, map_runs)
    if not runs and spikes:  # no sound run: the best spike, to convergence
        for spike in sorted(spikes, key=lambda r: r.lower_bound, reverse=True):
            runs = _advance_all(plain, [spike], None, errors)
            if runs:
                break
    if not runs:
        real = [err for err in errors if not isinstance(err, _Spike)]
        if real or errors:
            raise (real or errors)[0]
        raise ValueError("No start gave a finite log-likelihood; check the data.")
    return runs[0]


def _start_runs(start_many: Any, resps: list, errors: list) -> list:
    """Every start's run by ``start_many``, its ``kind`` set; the errors of those that failed
    (a collapse: the start is dropped) added to ``errors``."""
    runs = []
    for (kind, _), run in zip(resps, start_many([resp for _, resp in resps]), strict=True):
        if isinstance(run, Exception):
            errors.append(run)
        else:
            run.kind = kind
            runs.append(run)
    return runs


def _continue(
    step: Any, runs: list, promoted: list, strategy: Strategy, errors: list, map_runs: Any = map
) -> list:
    """The short runs (best first) and the promoted ones continued: the loose stage, then the
    ``n_best`` and the ``always`` kinds to convergence through ``map_runs`` (the next
    surviving run if all fail)."""
    n_best = strategy.n_best or len(runs)
    n_keep = max(n_best, strategy.n_loose)
    keep, rest = runs[:n_keep], runs[n_keep:]
    first = _promoted(keep, promoted, 1)  # beats every screened one: competes with them
    more = [r for r in _promoted(keep, promoted, strategy.promote_within) if not _among(r, first)]
    keep += first
    if n_keep > n_best:  # the kept ones to a loose convergence first; the best go on
        ranked = _loosely(step, keep + more, strategy.loose_tol, errors)
        keep = [r for r in ranked if not _among(r, more)][:n_best]  # as without ``more``
        keep += [r for r in ranked[:n_best] if _among(r, more)]  # and in addition
        rest = [r for r in ranked if not _among(r, keep)] + rest
    else:
        keep += more
    keep += [r for r in rest if r.kind in strategy.always]
    runs = _advance_all(step, keep, None, errors, map_runs)
    for run in (r for r in rest if r.kind not in strategy.always):
        if runs:  # every continued run failed: the next surviving one, in rank order
            break
        runs = _advance_all(step, [run], None, errors)
    return runs


def _among(run: Any, runs: list) -> bool:
    """Whether ``run`` is one of ``runs`` (by identity: runs do not compare by value)."""
    return any(run is r for r in runs)


def _promoted(keep: list, promoted: list, within: int) -> list:
    """The promoted runs whose short run ranks among the ``within`` best of itself and the
    screened short runs kept (``keep``): fewer than ``within`` of those are at or above it."""
    return [r for r in promoted if sum(k.lower_bound >= r.lower_bound for k in keep) < within]


def _screen(step: Any, runs: list, strategy: Strategy, errors: list) -> tuple[list, list]:
    """The screened runs (the ``n_screened`` best after one iteration, and the ``always``
    kinds) and the promoted ones: of the ``n_reserve`` next best, those that rank among the
    ``n_screened`` best of the two groups after ``reserve_iter`` iterations. The screened
    runs are those of a screening without reserve; all have had that many iterations."""
    n = strategy.n_screened or len(runs)
    top, rest = runs[:n], runs[n:]
    screened = top + [r for r in rest if r.kind in strategy.always]
    reserve = [r for r in rest if r.kind not in strategy.always][: strategy.n_reserve]
    more = _reserve_iter(strategy) - 1
    if more < 1:
        return screened, []
    screened = _advance_all(step, screened, more, errors)
    reserve = _advance_all(step, reserve, more, errors)
    second = [r.lower_bound for r in screened if any(r is t for t in top)]
    if not second or not reserve:
        return screened, []
    bar = sorted(second + [r.lower_bound for r in reserve], reverse=True)[len(second) - 1]
    return screened, [r for r in reserve if r.lower_bound >= bar]


def _reserve_iter(strategy: Strategy) -> int:
    """The iterations after which the reserve is ranked: within the short run."""
    return max(1, min(strategy.reserve_iter, strategy.short_iter + 1))


def _loosely(step: Any, runs: list, tol: float, errors: list, n_step: int = 5) -> list:
    """Runs advanced ``n_step`` iterations at a time until each rises by less than ``tol`` per
    iteration (its ``trace``'s last step), converges, or stops; the ones that did not fail,
    best first."""
    active, done = list(runs), []
    while active:
        moving = []
        before = [run.n_iter for run in active]
        for run, start, err in zip(active, before, step(active, n_step), strict=True):
            if err is not None:  # a collapse: drop this start
                errors.append(err)
                continue
            if not np.isfinite(run.lower_bound):
                continue
            rise = run.trace[-1] - run.trace[-2] if len(run.trace) > 1 else np.inf
            stopped = run.converged or run.n_iter == start or rise < tol
            (done if stopped else moving).append(run)
        active = moving
    return sorted(done, key=lambda r: r.lower_bound, reverse=True)


class _Spike(ArithmeticError):
    """A run drawn to the ``reg_covar`` floor (see :func:`em_em`'s ``sound``)."""


def _dropping_spikes(step: Any, sound: Any, spikes: list, enough: int) -> Any:
    """``step`` (an ``advance_many``) that fails the runs ``sound`` rejects after it, and
    keeps them in ``spikes``. Runs are checked best first until ``enough`` are sound (0: all):
    the rest rank below those, so no later stage takes them before a check (each stage checks
    the runs it advances)."""

    def checked(runs: list, n_iter: int | None, map_runs: Any = map) -> list:
        out = step(runs, n_iter, map_runs)
        fine = [i for i, err in enumerate(out) if err is None and np.isfinite(runs[i].lower_bound)]
        found = 0
        for i in sorted(fine, key=lambda i: runs[i].lower_bound, reverse=True):
            if enough and found >= enough:
                break
            if sound(runs[i]):
                found += 1
            else:
                spikes.append(runs[i])
                out[i] = _Spike("a component's variance reached the reg_covar floor")
        return out

    return checked


def _per_start(start: Any) -> Any:
    """``start_many`` (see :func:`em_em`) from the per-start ``start``."""

    def start_many(resps: list) -> list:
        out = []
        for resp in resps:
            try:
                out.append(start(resp))
            except (ValueError, ArithmeticError) as err:
                out.append(err)
        return out

    return start_many


def _per_run(advance: Any) -> Any:
    """``advance_many`` (see :func:`em_em`) from the per-run ``advance``: the runs one after
    the other, or through ``map_runs`` when they go to convergence (e.g. on threads; short
    runs of a few iterations cost less than handing them to another thread)."""

    def step(runs: list, n_iter: int | None, map_runs: Any = map) -> list:
        def one(run: Any) -> Exception | None:
            try:
                advance(run, n_iter)
            except (ValueError, ArithmeticError) as err:  # a collapse: drop this start
                return err
            return None

        return list((map_runs if n_iter is None else map)(one, runs))

    return step


def _advance_all(
    step: Any, runs: list, n_iter: int | None, errors: list, map_runs: Any = map
) -> list:
    """``step`` (an ``advance_many``) every run by ``n_iter``; the ones that did not fail,
    best first (errors in the runs' order)."""
    kept = []
    for run, err in zip(runs, step(runs, n_iter, map_runs), strict=True):
        if err is not None:
            errors.append(err)
        elif np.isfinite(run.lower_bound):
            kept.append(run)
    return sorted(kept, key=lambda r: r.lower_bound, reverse=True)


def pool_data(X: Any) -> np.ndarray | None:
    """The rows the fits iterate over, as a finite float matrix for the shared pool of
    starting partitions, or None (no shared pool: Dask arrays, or data the fits will reject
    with their own message).

    With missing cells these are the rows with something observed (those
    :func:`bayesgmm._missing.prepare` keeps, so the starts line up with the fits' rows), each
    missing cell set to its feature's observed mean (a start only, as in
    :func:`bayesgmm._missing.initial_rows`)."""
    if is_dask_array(X):
        return None
    try:
        A = np.asarray(X, dtype=float)
    except (TypeError, ValueError):
        return None
    if A.ndim != 2 or np.isinf(A).any():
        return None
    nan = np.isnan(A)
    if nan.any():
        A = A[~nan.all(axis=1)]
        if A.shape[0] < 2 or np.isnan(A).all(axis=0).any():
            return None
        A = np.where(np.isnan(A), np.nanmean(A, axis=0), A)
    if A.shape[0] < 2 or np.any(np.ptp(A, axis=0) == 0):
        return None
    return A


def _log_likelihoods(rows: dict, k: int) -> dict[tuple[int, str], float]:
    """The log-likelihood of the fit of each model at ``K = k`` among ``rows`` (its first row,
    where aliases share it), by ``(k, model name)``."""
    out: dict[tuple[int, str], float] = {}
    for (j, _), r in rows.items():
        if j == k and "log_likelihood" in r:  # (a failed fit has none, and no labels)
            out.setdefault((j, r["model_name"]), r["log_likelihood"])
    return out


def sweep_starts(
    data: np.ndarray,
    k: int,
    cov_type: str,
    shared: list[tuple[str, np.ndarray]],
    labels: dict[tuple[int, str], np.ndarray],
    rows: dict[tuple[int, str], dict[str, Any]],
    strategy: Strategy,
    cache: dict | None = None,
) -> list[tuple[str, np.ndarray]]:
    """The shared pool at K, the same model's K - 1 fit split, and the partitions of the
    other models' fits at K (the ``strategy.n_cross`` with the highest log-likelihood).
    ``cache``: a dict kept across a sweep's calls (the standardised data, and the splits of
    each partition: models often agree on the K - 1 partition)."""
    found = []
    cache = {} if cache is None else cache
    if (k - 1, cov_type) in labels:
        if "standard" not in cache:
            cache["standard"] = (data - data.mean(axis=0)) / data.std(axis=0)
        parent = labels[k - 1, cov_type]
        smallest = strategy.split_min * min_effective_size(cov_type, data.shape[1])
        key = ("split", strategy.n_split, smallest, parent.tobytes())
        if key not in cache:
            cache[key] = split_starts(parent, cache["standard"], strategy.n_split, smallest)
        found += [("split", s) for s in cache[key]]
    log_likelihoods = _log_likelihoods(rows, k)
    done = [(log_likelihoods[key], key) for key in labels if key[0] == k]
    done.sort(key=lambda item: -item[0])
    found += [("cross", labels[key]) for _, key in done[: strategy.n_cross]]
    return list(shared) + [
        (kind, one_hot(l, k, data.shape[0]))
        for kind, l in found
        if np.count_nonzero(np.bincount(l)) == k  # k clusters (labels are 0, 1, ...)
    ]


def sweep_rows(
    fit_one: Any,
    X: Any,
    ks: list[int],
    cov_types: list[str],
    em_kwargs: dict,
    strategy: Strategy | None,
    progress: bool,
    sample_weight: Any = None,
) -> list[dict[str, Any]]:
    """Every (K, model) row of an em_sweep, by ``fit_one(X, k, cov_type, em_kwargs, starts,
    strategy, sample_weight)``, K by K so that each model's K - 1 fit gives its split starts
    and the models fitted at K their partitions; an alias of a model fitted already shares its
    row. The pool of starting partitions ignores ``sample_weight`` (they are only starts);
    every fit from them uses it. A fit whose every start failed is tried again from the other
    models' fits at K (:func:`bayesgmm._sweepmoves.rescue_starts`); the largest K's ``K + 1``
    fit (:attr:`Strategy.top_parent`) is only merged from, not returned."""
    data = None if strategy is None else pool_data(X)
    fitted = list(ks) + ([] if data is None else top_parent(data.shape[0], ks, strategy))
    # (no pool above the rows: no start gives each component a row, and fit_one refuses them)
    pooled = [] if data is None else [k for k in fitted if k <= data.shape[0]]
    pool = {} if data is None else partition_pool(data, pooled, strategy, em_kwargs["random_state"])
    if data is not None:  # the rows the fits keep: those with something observed
        observed = ~np.isnan(np.asarray(X, dtype=float)).all(axis=1)
    labels: dict[tuple[int, str], np.ndarray] = {}  # MAP partitions of the fits so far
    rows, cache = {}, {}
    with progress_bar(len(fitted) * len(cov_types), "EM sweep", enabled=progress) as bar:
        for k in fitted:
            for cov_type in cov_types:
                bar.describe(f"EM: K={k} {cov_type}" + ("" if k in ks else " (to merge from)"))
                name = model_name(cov_type)
                same = next(
                    (r for (j, _), r in rows.items() if j == k and r["model_name"] == name), None
                )
                if same is not None:  # an alias of a model fitted already: the same fit
                    rows[k, cov_type] = {**same, "covariance_type": cov_type}
                    bar.advance()
                    continue
                starts = None
                if k in pool and not inestimable(name, k, *np.shape(X)):  # (fit_one refuses it)
                    starts = sweep_starts(data, k, name, pool[k], labels, rows, strategy, cache)
                kw, how = (em_kwargs, strategy) if k in ks else parent_strategy(em_kwargs, strategy)
                row = fit_one(X, k, cov_type, kw, starts, how, sample_weight)
                if starts is not None and row["_fit"] is None:  # every start failed
                    rescue = rescue_starts(k, labels, rows, starts)
                    row = fit_one(X, k, cov_type, kw, rescue, how, sample_weight) if rescue else row
                if starts is not None and row["_fit"] is not None:  # predict(X), from fit_one
                    labels[k, name] = row["_labels"][observed]
                rows[k, cov_type] = row
                bar.advance()
    if data is not None and strategy.n_merge:
        context = dict(
            em_kwargs=em_kwargs, strategy=strategy, sample_weight=sample_weight, observed=observed
        )
        top = max(ks) + 1  # (the top K's merges come after the pass: none of its cells lower)
        parents = {key: labels.pop(key) for key in [key for key in labels if key[0] == top]}
        merge_pass(fit_one, X, ks, cov_types, context, rows, labels)
        if parents:
            every = labels | parents
            top_merges(ks, cov_types, lambda *a: merge_pass(fit_one, X, *a, context, rows, every))
    return [rows[k, c] for c in cov_types for k in ks]
