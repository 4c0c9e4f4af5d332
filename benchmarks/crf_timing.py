"""How ``benchmarks/crf.py`` times its CRFs on a shared machine.

* ``side_by_side`` (one thread each): two worker processes, one thread each, run two
  CRFs on the same photograph at the same moment (a barrier starts both), so that the
  machine's load falls on both alike; the pairs take turns, and the two workers swap
  CRFs every round.
* ``interleaved`` (more threads): one process runs the CRFs one after the other on each
  photograph, rounds after rounds, the order rotating each round.

Each run records its wall-clock and CPU seconds and its labels.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from crf_contenders import contenders, load_published, timed
from crf_data import photographs


@dataclass
class Runs:
    """Per CRF: the (wall, cpu) seconds of each timed run, in (round, photograph) order,
    and its labels of each photograph."""

    seconds: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    labels: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def record(self, name: str, index: int, wall: float, cpu: float, labels: torch.Tensor) -> None:
        self.seconds[name].append((wall, cpu))
        found = self.labels.setdefault(name, [])
        if len(found) <= index:
            found.append(labels)


@dataclass(frozen=True)
class Case:
    megapixels: float
    kind: str
    seed: int
    part: str = "whole"


def make_photos(case: Case, repo):
    synthetic = load_published(repo)[1] if repo is not None else None
    augment = synthetic.augment_label if synthetic is not None else None
    return photographs(case.megapixels, case.kind, case.seed, part=case.part, augment_label=augment)


def interleaved(crfs: dict, photos, iterations: int, rounds: int) -> Runs:
    """All CRFs in this process with torch's current threads; a warm-up run each first."""
    runs = Runs()
    names = list(crfs)
    prepared = {(n, i): crfs[n].prepare(p) for n in names for i, p in enumerate(photos)}
    for name in names:
        crfs[name].run(prepared[name, 0], iterations)
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for index in range(len(photos)):
            for name in order:
                runs.record(name, index, *timed(crfs[name], prepared[name, index], iterations))
    return runs


def _worker(connection, barrier, repo, convcrf_settings) -> None:
    torch.set_num_threads(1)
    crfs = contenders(repo, convcrf_settings)
    photos, prepared = [], {}
    while True:
        command, *args = connection.recv()
        if command == "stop":
            return
        if command == "photos":
            photos, prepared = make_photos(args[0], repo), {}
            connection.send(len(photos))
            continue
        name, index, iterations = args
        if (name, index) not in prepared:
            prepared[name, index] = crfs[name].prepare(photos[index])
        barrier.wait()
        connection.send(timed(crfs[name], prepared[name, index], iterations))


class SideBySide:
    """Two single-threaded worker processes that run CRFs in pairs, at once."""

    def __init__(self, repo, convcrf_settings: dict | None = None) -> None:
        context = multiprocessing.get_context("spawn")
        # kept: the workers open its semaphores after they start
        self.barrier = barrier = context.Barrier(2)
        self.connections, self.workers = [], []
        os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the workers as they start
        for _ in range(2):
            mine, theirs = context.Pipe()
            worker = context.Process(
                target=_worker, args=(theirs, barrier, repo, convcrf_settings), daemon=True
            )
            worker.start()
            self.connections.append(mine)
            self.workers.append(worker)

    def run(self, case: Case, pairs: list[tuple[str, str]], iterations: int, rounds: int) -> Runs:
        for connection in self.connections:
            connection.send(("photos", case))
        photos = [connection.recv() for connection in self.connections][0]  # noqa: RUF015
        runs = Runs()
        for round_ in range(-1, rounds):  # round -1 warms up on one photograph, untimed
            for index in range(photos if round_ >= 0 else 1):
                for pair in pairs:
                    # the workers swap CRFs every round: neither keeps a faster core
                    names = pair if round_ % 2 == 0 else pair[::-1]
                    for connection, name in zip(self.connections, names, strict=True):
                        connection.send(("run", name, index, iterations))
                    results = [connection.recv() for connection in self.connections]
                    if round_ >= 0:
                        for name, result in zip(names, results, strict=True):
                            runs.record(name, index, *result)
        return runs

    def close(self) -> None:
        for connection in self.connections:
            connection.send(("stop",))
        for worker in self.workers:
            worker.join(timeout=10)
