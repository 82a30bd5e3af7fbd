"""How the settings of ``auto`` were chosen: candidate rules scored on the development tasks only.

Run from the repository root after ``benchmarks.few_shot`` has built the tasks' features::

    nice .venv/bin/python -m benchmarks.auto_settings            # about 20 minutes on 2 cores

For every development task of ``benchmarks.few_shot`` (never a benchmark task) and k = 1, 5, 10,
20, it draws the same 20 seeded episodes as the benchmark and caches, for every feature x
classifier pair, its cross-validated held-out probabilities on the support set (what ``auto``
sees) and its probabilities on the queries (``.cache/few_shot/settings/<task>_<k>.npz``). Each
candidate rule then picks and combines pairs from the held-out probabilities alone and is scored
on the queries: for k >= 5 against the best fixed pair chosen after the fact on the queries, for
k = 1 (no cross-validation possible) against MFCC + 1-NN. Prints the two Markdown tables of
docs/custom-models.md ("How the settings of auto were chosen"). The rule was picked by the best
worst case over the development cells, rules within 0.5 point of it tying, ties going to the
fewest networks, then to the better mean.

First it prints the tables of how the one-shot vote standardises (``--scalings-only``: those
alone, a few minutes): the vote refitted on each k = 1 support set with each rule of
:data:`ONE_SHOT_SCALINGS`, against MFCC + 1-NN, with every class of a development task and with
two (every pair of its classes), and which rules the criterion of docs/custom-models.md allows.
``--reported`` prints the rule before and the chosen one on the tasks ``benchmarks.few_shot``
reports instead (run once, after the choice). ``--classifiers`` prints the one-shot vote with
each classifier (what ``classifier=svm`` and the others get with one example per class), on
every task, with every class and with two: it chooses nothing (15 s on 2 cores).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import typer
from threadpoolctl import threadpool_limits

from benchmarks import ROOT
from benchmarks.few_shot import (
    BASELINE,
    BENCHMARK,
    CACHE,
    DEVELOPMENT,
    QUERIES,
    episode_split,
    features_of,
)
from taggram.service.custom import selection
from taggram.service.custom.ensemble import calibrate, fit_temperature
from taggram.service.custom.features import auto_features, candidates, split
from taggram.service.custom.heads import Scaling, per_dimension

FOLDER = CACHE / "settings"
THREE = ("MTT_musicnn", "mfcc", "random_vgg")
OTHERS = ("MTT_sample_cnn", "mfcc", "random_vgg", "random_sample_cnn")
ALL_BUT_VGG = ("MTT_musicnn", "MSD_musicnn", *OTHERS)
ALL_BUT_MSD = ("MTT_musicnn", "MTT_vgg", *OTHERS)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def cache(task: str, k: int, episodes: int, repository: Path) -> Path:
    """Held-out (support) and query probabilities of every pair in every episode (cached)."""
    path = FOLDER / f"{task}_{k}.npz"
    if path.is_file():
        return path
    features, labels, _ = features_of(task, repository)
    pool = candidates(list(features), list(selection.CLASSIFIERS))
    n_classes = int(labels.max()) + 1
    held, query, support_labels, query_labels = [], [], [], []
    for episode in range(episodes):
        s, q = episode_split(labels, k, episode)  # the benchmark's episodes
        Y = np.eye(n_classes, dtype=bool)[labels[s]]
        cv = np.zeros((len(pool), len(s), n_classes), np.float32)
        qp = np.zeros((len(pool), len(q), n_classes), np.float32)
        with threadpool_limits(limits=1):
            for i, pair in enumerate(pool):
                X = features[pair.feature]
                if k >= 2:
                    cv[i] = selection.held_out(X[s], Y, pair.classifier, False, min(5, k))
                head = selection.make_head(pair.classifier, False).fit(X[s], Y)
                qp[i] = head.predict_proba(X[q])
        held.append(cv)
        query.append(qp)
        support_labels.append(labels[s])
        query_labels.append(labels[q])
    FOLDER.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        cv=np.stack(held),
        q=np.stack(query),
        ys=np.stack(support_labels),
        yq=np.stack(query_labels),
        pool=np.array([f"{pair.classifier}|{pair.feature}" for pair in pool]),
    )
    return path


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(probabilities.argmax(axis=1) == labels))


# A rule for k >= 2: (held-out [pairs, n, C], query [pairs, m, C], support labels, pair names)
# -> query probabilities [m, C].
Rule = Callable[[np.ndarray, np.ndarray, np.ndarray, list[str]], np.ndarray]


def ranked(cv: np.ndarray, ys: np.ndarray, keep: list[int]) -> list[int]:
    """``keep``'s pairs by held-out accuracy, then mean reciprocal rank (``select``'s order)."""
    Y = np.eye(cv.shape[-1], dtype=bool)[ys]

    def key(i: int) -> tuple[float, float]:
        return (-selection.score(Y, cv[i], False), -selection.reciprocal_rank(Y, cv[i]))

    return sorted(keep, key=key)


def vote(
    cv: np.ndarray, q: np.ndarray, ys: np.ndarray, members: Sequence[int], scaled: bool
) -> np.ndarray:
    """The members' query probabilities averaged, each temperature-scaled on its
    cross-validated probabilities first when ``scaled``."""
    Y = np.eye(cv.shape[-1], dtype=bool)[ys]
    parts = [
        calibrate(q[i], fit_temperature(cv[i], Y, False), False) if scaled else q[i]
        for i in members
    ]
    return np.mean(parts, axis=0)


def rule(networks: Sequence[str] | None, pick: str, scaled: bool) -> Rule:
    """Members among the pairs of ``networks`` (all when None), picked by ``pick``: ``best``
    (one), ``top2`` (two best), ``features2`` (best of each of the two best features),
    ``top5margin`` (up to 5 best within 0.1 of the best), ``top5``; optionally
    temperature-scaled before averaging."""

    def apply(cv: np.ndarray, q: np.ndarray, ys: np.ndarray, pool: list[str]) -> np.ndarray:
        keep = [
            i
            for i, name in enumerate(pool)
            if networks is None or split(name.split("|")[1])[0] in networks
        ]
        order = ranked(cv, ys, keep)
        Y = np.eye(cv.shape[-1], dtype=bool)[ys]
        if pick == "best":
            members = order[:1]
        elif pick == "top2":
            members = order[:2]
        elif pick == "top5":
            members = order[:5]
        elif pick == "top5margin":
            best = selection.score(Y, cv[order[0]], False)
            members = [i for i in order[:5] if selection.score(Y, cv[i], False) >= best - 0.1]
        else:  # features2
            seen: dict[str, int] = {}
            for i in order:
                seen.setdefault(pool[i].split("|")[1], i)
            members = sorted(seen.values(), key=order.index)[:2]
        return vote(cv, q, ys, members, scaled)

    return apply


def greedy(networks: Sequence[str], steps: int) -> Rule:
    """Greedy ensemble selection with replacement (Caruana et al., ICML 2004) over the 10 best
    pairs, on temperature-scaled held-out probabilities."""

    def apply(cv: np.ndarray, q: np.ndarray, ys: np.ndarray, pool: list[str]) -> np.ndarray:
        keep = [i for i, name in enumerate(pool) if split(name.split("|")[1])[0] in networks]
        order = ranked(cv, ys, keep)[:10]
        Y = np.eye(cv.shape[-1], dtype=bool)[ys]
        temperatures = {i: fit_temperature(cv[i], Y, False) for i in order}
        held = {i: calibrate(cv[i], temperatures[i], False) for i in order}
        chosen: list[int] = []
        total = np.zeros_like(cv[0])
        for _ in range(steps):

            def gain(i: int, total: np.ndarray = total) -> tuple[float, float]:
                mean = (total + held[i]) / (len(chosen) + 1)
                return (selection.score(Y, mean, False), selection.reciprocal_rank(Y, mean))

            best = max(order, key=gain)
            chosen.append(best)
            total = total + held[best]
        return np.mean([calibrate(q[i], temperatures[i], False) for i in chosen], axis=0)

    return apply


RULES: dict[str, tuple[int, Rule]] = {  # name: (networks run, rule)
    "best pair by CV among all 48 (`auto` before)": (8, rule(None, "best", False)),
    "best pair by CV on `MTT_musicnn`, `mfcc`, `random_vgg`": (3, rule(THREE, "best", False)),
    "best pair of each of the 2 best features, averaged as they are": (
        3,
        rule(THREE, "features2", False),
    ),
    "**the same, temperature-scaled (chosen)**": (3, rule(THREE, "features2", True)),
    "2 best pairs, temperature-scaled": (3, rule(THREE, "top2", True)),
    "up to 5 best pairs within 0.1 of the best, temperature-scaled": (
        3,
        rule(THREE, "top5margin", True),
    ),
    "the same on all networks but the VGGs": (6, rule(ALL_BUT_VGG, "top5margin", True)),
    "5 best pairs, temperature-scaled, all 48": (8, rule(None, "top5", True)),
    "greedy ensemble selection (Caruana et al. 2004), 10 steps, no MSD networks": (
        6,
        greedy(ALL_BUT_MSD, 10),
    ),
}

# One example per class: fixed weighted votes, (classifier, {feature: weight}).
ONE_SHOT: dict[str, tuple[str, dict[str, float]]] = {
    "`logistic` on `MTT_musicnn.max_pool` (the fallback before)": (
        "logistic",
        {"MTT_musicnn.max_pool": 1.0},
    ),
    "equal vote of prototypes on all 12 features": ("prototypes", {}),
    "equal vote of `logistic` on MFCC, MTT and MSD `max_pool`": (
        "logistic",
        {"mfcc.statistics": 1, "MTT_musicnn.max_pool": 1, "MSD_musicnn.max_pool": 1},
    ),
    "**`logistic`, weights 0.6 MFCC, 0.2 MTT `max_pool`, 0.2 MSD `max_pool` (chosen)**": (
        "logistic",
        {"mfcc.statistics": 0.6, "MTT_musicnn.max_pool": 0.2, "MSD_musicnn.max_pool": 0.2},
    ),
    "the same, weights 0.7 / 0.15 / 0.15 (the best worst case)": (
        "logistic",
        {"mfcc.statistics": 0.7, "MTT_musicnn.max_pool": 0.15, "MSD_musicnn.max_pool": 0.15},
    ),
}


def _centred_rms(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    rms = float(np.sqrt(np.mean((X - mean) ** 2)))
    return mean, np.full(X.shape[1], rms if rms > 0 else 1.0)


def _shrunk(weight: float) -> Scaling:
    """Each dimension's variance moved ``weight`` of the way to the feature's mean variance."""

    def scaling(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        variance = X.var(axis=0)
        shrunk = (1 - weight) * variance + weight * variance.mean()
        return X.mean(axis=0), np.sqrt(np.where(shrunk > 0, shrunk, 1.0))

    return scaling


def _floored(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = per_dimension(X)
    return mean, np.maximum(scale, np.median(X.std(axis=0)))


BEFORE = "each dimension by the examples' mean and std (before)"
NOW = "variance shrunk 1/(n − 1) of the way, n examples (chosen)"
# How the one-shot vote's heads standardise, fitted on the support set of each k = 1 episode.
ONE_SHOT_SCALINGS: dict[str, Scaling] = {
    BEFORE: per_dimension,
    "none (raw features)": lambda X: (np.zeros(X.shape[1]), np.ones(X.shape[1])),
    "centred, not scaled": lambda X: (X.mean(axis=0), np.ones(X.shape[1])),
    "centred, one scale per feature (RMS of the centred examples)": _centred_rms,
    "each dimension's variance shrunk halfway to the feature's mean variance": _shrunk(0.5),
    "the same, 0.8 of the way": _shrunk(0.8),
    "each dimension's std floored at the feature's median std": _floored,
    NOW: selection.ONE_SHOT_SCALING,
}
PAIR_EPISODES = 5  # two-class episodes per pair of classes
MAX_DROP = 1.0  # points a candidate may lose against the rule before in any cell


def _episodes(
    labels: np.ndarray, pairs: bool, episodes: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Seeded k = 1 episodes, (support, queries, the queries' labels among the support's
    classes): every class, the benchmark's own ``episodes``; or ``pairs``, :data:`PAIR_EPISODES`
    for every pair of classes, one support example and up to ``QUERIES`` queries each."""
    if not pairs:
        return [
            (s, q, labels[q]) for s, q in (episode_split(labels, 1, e) for e in range(episodes))
        ]
    out = []
    for a, b in itertools.combinations(range(int(labels.max()) + 1), 2):
        for e in range(PAIR_EPISODES):
            rng = np.random.default_rng(7000 + 100 * a + 10 * b + e)
            ia, ib = (rng.permutation(np.flatnonzero(labels == c)) for c in (a, b))
            q = np.concatenate([ia[1 : 1 + QUERIES], ib[1 : 1 + QUERIES]])
            out.append((np.array([ia[0], ib[0]]), q, (labels[q] == b).astype(int)))
    return out


def one_shot_margins(
    tasks: Sequence[str],
    pairs: bool,
    scalings: dict[str, Scaling],
    episodes: int,
    repository: Path,
) -> dict[str, list[float]]:
    """Points above MFCC + 1-NN of the one-shot vote refitted with each of ``scalings``, per
    task, at k = 1 with every class of the task, or two (``pairs``: every pair)."""
    weights = selection.ONE_SHOT_FEATURES
    margins: dict[str, list[float]] = {name: [] for name in scalings}
    for task in tasks:
        features, labels, _ = features_of(task, repository)
        scores: dict[str, list[float]] = {name: [] for name in scalings}
        baseline = []
        for s, q, truth in _episodes(labels, pairs, episodes):
            Y = np.eye(len(s), dtype=bool)
            knn = selection.make_head("knn", False).fit(features["mfcc.statistics"][s], Y)
            baseline.append(accuracy(knn.predict_proba(features["mfcc.statistics"][q]), truth))
            for name, scaling in scalings.items():
                parts = [
                    selection.make_head(selection.ONE_SHOT_CLASSIFIER, False, scaling)
                    .fit(features[feature][s], Y)
                    .predict_proba(features[feature][q])
                    for feature in weights
                ]
                vote = np.average(parts, axis=0, weights=list(weights.values()))
                scores[name].append(accuracy(vote, truth))
        for name in scalings:
            margins[name].append(float(100 * (np.mean(scores[name]) - np.mean(baseline))))
        accuracies = ", ".join(f"{name}: {np.mean(scores[name]):.3f}" for name in scalings)
        print(
            f"{task}, {'2' if pairs else 'all'} classes, accuracy: MFCC + 1-NN "
            f"{np.mean(baseline):.3f}, {accuracies}",
            flush=True,
        )
    return margins


def _table(title: str, tasks: Sequence[str], margins: dict[str, list[float]]) -> None:
    print(
        f"\n| {title} | mean | worst | " + " | ".join(t.removeprefix("dev_") for t in tasks) + " |"
    )
    print("|---|---|---|" + "---|" * len(tasks))
    for name, values in margins.items():
        cells = " | ".join(f"{v:+.1f}" for v in values)
        print(f"| {name} | {np.mean(values):+.1f} | {min(values):+.1f} | {cells} |")


def one_shot_scalings(episodes: int, repository: Path, reported: bool) -> None:
    """The one-shot vote's standardisations against MFCC + 1-NN at k = 1, every class and two,
    and the pick (development tasks): no cell more than :data:`MAX_DROP` below the rule before
    and a better mean over the cells; of those, the best mean. With ``reported``, only the rule
    before and the chosen one, on the tasks ``benchmarks.few_shot`` reports (run once, after
    the choice)."""
    tasks = BENCHMARK if reported else DEVELOPMENT
    names = (BEFORE, NOW) if reported else tuple(ONE_SHOT_SCALINGS)
    scalings = {name: ONE_SHOT_SCALINGS[name] for name in names}
    cells: dict[str, list[float]] = {name: [] for name in scalings}
    for pairs in (False, True):
        margins = one_shot_margins(tasks, pairs, scalings, episodes, repository)
        title = "2 classes" if pairs else "all classes"
        _table(f"one-shot vote standardising ({title}, k = 1)", tasks, margins)
        for name, values in margins.items():
            cells[name] += values
    if reported:
        return
    print("\n| rule | mean of the 6 cells | largest loss against the rule before | eligible |")
    print("|---|---|---|---|")
    for name, values in cells.items():
        loss = max(b - v for b, v in zip(cells[BEFORE], values, strict=True))
        eligible = loss <= MAX_DROP and np.mean(values) > np.mean(cells[BEFORE])
        print(f"| {name} | {np.mean(values):+.2f} | {loss:+.2f} | {'yes' if eligible else 'no'} |")


def one_shot_classifiers(episodes: int, repository: Path) -> None:
    """The one-shot vote with each classifier at k = 1, as the service builds it for
    ``POST /v1/models`` with ``classifier=NAME`` (features ``auto``) and one example of every
    class: ``selection.select`` on the candidates of :func:`auto_features`, then
    ``selection.fit``. Every task (the vote's settings are fixed: nothing is chosen here), every
    class and two (every pair); accuracy, points above MFCC + 1-NN, and the mean probability of
    the class it answers (1 / classes: no preference at all)."""
    classifiers = selection.CLASSIFIERS
    for pairs in (False, True):
        print(
            f"\n| one-shot vote, k = 1, {'2 classes' if pairs else 'all classes'} | "
            + " | ".join(f"`{c}`: accuracy (points above MFCC + 1-NN), top p" for c in classifiers)
            + " | MFCC + 1-NN |"
        )
        print("|---|" + "---|" * (len(classifiers) + 1))
        for task in (*BENCHMARK, *DEVELOPMENT):
            features, labels, _ = features_of(task, repository)
            considered = auto_features(list(features), one_shot=True)
            accuracies: dict[str, list[float]] = {c: [] for c in classifiers}
            tops: dict[str, list[float]] = {c: [] for c in classifiers}
            baseline = []
            for s, q, truth in _episodes(labels, pairs, episodes):
                Y = np.eye(len(s), dtype=bool)
                train = {name: features[name][s] for name in considered}
                query = {name: features[name][q] for name in considered}
                knn = selection.make_head("knn", False).fit(features[BASELINE][s], Y)
                baseline.append(accuracy(knn.predict_proba(features[BASELINE][q]), truth))
                for classifier in classifiers:
                    chosen = selection.select(train, Y, candidates(considered, [classifier]), False)
                    assert chosen.method == "fallback", chosen.method
                    vote = selection.fit(train, Y, chosen, False).predict_proba(query)
                    accuracies[classifier].append(accuracy(vote, truth))
                    tops[classifier].append(float(vote.max(axis=1).mean()))
            floor = float(np.mean(baseline))
            cells = " | ".join(
                f"{np.mean(accuracies[c]):.3f} ({100 * (np.mean(accuracies[c]) - floor):+.1f}), "
                f"{np.mean(tops[c]):.2f}"
                for c in classifiers
            )
            print(f"| {task} | {cells} | {floor:.3f} |", flush=True)


def k_rules(paths: dict[tuple[str, int], Path]) -> None:
    cells = {name: {} for name in RULES}  # type: ignore[var-annotated]
    for (task, k), path in paths.items():
        data = np.load(path)
        pool = [str(name) for name in data["pool"]]
        episodes = range(len(data["q"]))
        best = max(
            np.mean([accuracy(data["q"][e][i], data["yq"][e]) for e in episodes])
            for i in range(len(pool))
        )
        for name, (_, apply) in RULES.items():
            scores = [
                accuracy(apply(data["cv"][e], data["q"][e], data["ys"][e], pool), data["yq"][e])
                for e in episodes
            ]
            cells[name][(task, k)] = 100 * (np.mean(scores) - best)
    ks = sorted({k for _, k in paths})
    print(
        "| rule (k ≥ 2) | networks | mean | worst | "
        + " | ".join(f"{task[4:]} k={' / '.join(map(str, ks))}" for task in DEVELOPMENT)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(DEVELOPMENT))
    for name, (networks, _) in RULES.items():
        values = list(cells[name].values())
        per_task = [
            " / ".join(f"{cells[name][(task, k)]:+.1f}" for k in ks) for task in DEVELOPMENT
        ]
        print(
            f"| {name} | {networks} | {np.mean(values):+.2f} | {min(values):+.1f} | "
            + " | ".join(per_task)
            + " |"
        )


def one_shot_rules(paths: dict[str, Path]) -> None:
    print("\n| one-shot rule | " + " | ".join(task[4:] for task in DEVELOPMENT) + " |")
    print("|---|" + "---|" * len(DEVELOPMENT))
    margins = {name: [] for name in ONE_SHOT}  # type: ignore[var-annotated]
    for task in DEVELOPMENT:
        data = np.load(paths[task])
        pool = [str(name) for name in data["pool"]]
        index = {name: i for i, name in enumerate(pool)}
        episodes = range(len(data["q"]))
        baseline = np.mean(
            [accuracy(data["q"][e][index["knn|mfcc.statistics"]], data["yq"][e]) for e in episodes]
        )
        for name, (classifier, weights) in ONE_SHOT.items():
            weights = weights or {
                p.split("|")[1]: 1.0 for p in pool if p.startswith(f"{classifier}|")
            }
            members = [index[f"{classifier}|{feature}"] for feature in weights]
            scores = [
                accuracy(
                    np.average(data["q"][e][members], axis=0, weights=list(weights.values())),
                    data["yq"][e],
                )
                for e in episodes
            ]
            margins[name].append(100 * (np.mean(scores) - baseline))
    for name, values in margins.items():
        print(f"| {name} | " + " | ".join(f"{v:+.1f}" for v in values) + " |")


@app.command()
def main(
    repository: Path = typer.Option(ROOT / "model_repository", help="model repository"),
    episodes: int = typer.Option(20, min=1, help="episodes per task and k"),
    scalings_only: bool = typer.Option(
        False, help="only the one-shot standardisation tables (refits; no probability caches)"
    ),
    reported: bool = typer.Option(
        False, help="the one-shot standardisation before and now on the reported tasks, only"
    ),
    classifiers: bool = typer.Option(
        False, help="only the one-shot vote with each classifier, on every task (no choice)"
    ),
) -> None:
    """Print the tables of docs/custom-models.md that chose the settings of auto."""
    if classifiers:
        with threadpool_limits(limits=1):
            one_shot_classifiers(episodes, repository)
        return
    one_shot_scalings(episodes, repository, reported)
    if scalings_only or reported:
        return
    paths = {
        (task, k): cache(task, k, episodes, repository) for task in DEVELOPMENT for k in (5, 10, 20)
    }
    k_rules(paths)
    one_shot_rules({task: cache(task, 1, episodes, repository) for task in DEVELOPMENT})


if __name__ == "__main__":
    app()
