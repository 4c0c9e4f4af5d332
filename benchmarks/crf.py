"""segkit's CRFs beside the published codes they stand in for, on the same inputs.

Four CRFs refine the same photographs (``crf_contenders.py``): segkit's ``convcrf`` (at
its defaults) beside the published ConvCRF (Teichmann & Cipolla, commit 09306378, its
``GaussCRF`` with the default configuration and its demo's ``filter_size = 7``), and
segkit's ``densecrf_torch`` beside pydensecrf (the ``pydensecrf2`` package, one
thread), the dense CRFs with pydensecrf's example kernels (θα 80, θβ 13, θγ 3; weights
10 and 3).  The published ConvCRF is not on a package index: its folder comes from
``--convcrf-repo DIR`` or ``SEGKIT_CONVCRF_REPO`` (a pinned copy of it may sit in
``../shared/reference/convcrf``); without it its rows, and the demo's unaries, are
skipped with a note.  Its demo's unaries also need scikit-image (``pip install
scipy scikit-image``; the published module needs scipy).

The photographs are pydensecrf's three examples (``crf_data.py``), resized to about
0.1, 0.25 and 1 megapixels, with 21 classes and three kinds of synthetic unaries made
from their labels: ``network`` (a stride-8 network's noisy scores), ``paper`` (the
ConvCRF paper's protocol) and ``demo`` (the published demo's own ``utils/synthetic.py``).
For each size, kind, number of iterations and number of threads the table gives each
CRF's median seconds per image (wall clock) with the spread (fastest–slowest run), its
CPU seconds, its mIoU against the labels (accumulated over the photographs, as PASCAL
VOC's), against pydensecrf's output on the same unaries, and against the rough human
marks, and its share of pixels labelled as pydensecrf labels them.  The ratios are
medians of paired runs (same photograph, same round).

Timing on a shared machine: with one thread, two worker processes run a pair of CRFs
(``convcrf`` with the published ConvCRF, ``densecrf_torch`` with pydensecrf) on the same
photograph at the same moment, one thread each, and swap CRFs every round; with more
threads, one process runs the four one after another, rounds after rounds, the order
rotating (``crf_timing.py``).  pydensecrf always runs on one thread.  OpenMP threads
wait passively unless OMP_WAIT_POLICY says otherwise.

Every table (sizes 0.1, 0.25 and 1 MP, the three kinds, 5 and 10 iterations, 1 and 2
threads, 3 rounds) and the stage profiles:

    python benchmarks/crf.py --convcrf-repo ../shared/reference/convcrf
    python benchmarks/crf.py --convcrf-repo ../shared/reference/convcrf --profile \
        --sizes 0.25 --threads 1

``benchmarks/crf_results.md`` ran the first in three narrower parts (its commands are
listed there): --sizes, --unaries, --iterations, --threads, --rounds and --crfs narrow a
run, --part left|right keeps one half of each photograph.  On a CUDA machine
``--device cuda --batch 8`` times segkit's two CRFs and the published ConvCRF (its
``use_gpu=True``) in batches instead, with their mIoU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

# Spinning OpenMP threads wait for cores that other processes hold; on a shared machine
# that costs the PyTorch CRFs up to ten times their time.  Set before torch starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from crf_contenders import (
    DENSE_WEIGHTS,
    PUBLISHED_FILTER_SIZE,
    WIDTHS,
    contenders,
    convcrf_repo,
    load_published,
    segkit_version,
)
from crf_data import KINDS, example_photos, label_iou, size_of
from crf_timing import Case, Runs, SideBySide, interleaved, make_photos

PAIRS = [("convcrf", "published ConvCRF"), ("densecrf_torch", "pydensecrf")]
CLASSES = 21


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def machine_line() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{segkit_version()}, torch {torch.__version__}, {cpu_model()}, "
        f"{os.cpu_count()} cores, load {load:.1f} at the start"
    )


def paired_ratio(runs: Runs, a: str, b: str) -> float | None:
    if a not in runs.seconds or b not in runs.seconds:
        return None
    return statistics.median(
        x[0] / y[0] for x, y in zip(runs.seconds[a], runs.seconds[b], strict=True)
    )


def report(case: Case, iterations: int, threads: int, runs: Runs, photos, crfs) -> dict:
    """One markdown table of the CRFs on one case; returns the acceptance figures."""
    truth = torch.stack([photo.labels for photo in photos])
    marks = torch.stack([photo.marks for photo in photos])
    reference = runs.labels.get("pydensecrf")
    reference = torch.stack(reference).long() if reference else None
    height, width = truth.shape[-2:]
    how = "side by side, one thread each" if threads == 1 else f"interleaved, {threads} threads"
    print(
        f"\n#### {width}×{height} ({case.megapixels:g} MP"
        f"{'' if case.part == 'whole' else ', ' + case.part + ' halves'}), {case.kind} unaries, "
        f"{iterations} iterations, {how}, {len(photos)} photographs × "
        f"{len(next(iter(runs.seconds.values()))) // len(photos)} rounds\n"
    )
    print(
        "| CRF | what ran | s / image (median, min–max) | CPU s | mIoU labels "
        "| mIoU pydensecrf | same as pydensecrf | mIoU marks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    figures = {}
    for name, seconds in runs.seconds.items():
        walls = [wall for wall, _ in seconds]
        cpu = statistics.median(c for _, c in seconds)
        labels = torch.stack(runs.labels[name]).long()
        miou = label_iou(labels, truth, CLASSES)
        versus = same = "—"
        if reference is not None:
            versus = f"{label_iou(labels, reference, CLASSES):.4f}"
            same = f"{100 * float((labels == reference).float().mean()):.2f}%"
        print(
            f"| {name} | {crfs[name].label} | {statistics.median(walls):.3f} "
            f"({min(walls):.3f}–{max(walls):.3f}) | {cpu:.3f} | {miou:.4f} | {versus} | {same} "
            f"| {label_iou(labels, marks, CLASSES):.4f} |"
        )
        figures[name] = (statistics.median(walls), miou, same)
    key = (case.megapixels, case.kind, iterations, threads)
    return {"key": key, "figures": figures, "ratios": [paired_ratio(runs, *p) for p in PAIRS]}


def summary(results: list[dict]) -> None:
    print("\n### Summary: paired time ratios and mIoU differences\n")
    print(
        "| MP | unaries | iterations | threads | convcrf ÷ published time | convcrf − published "
        "mIoU | densecrf_torch ÷ pydensecrf time | same labels |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        figures = result["figures"]
        conv, dense = result["ratios"]
        gap = "—"
        if "published ConvCRF" in figures:
            gap = f"{figures['convcrf'][1] - figures['published ConvCRF'][1]:+.4f}"
        size, kind, iterations, threads = result["key"]
        same = figures["densecrf_torch"][2] if "densecrf_torch" in figures else "—"
        print(
            f"| {size:g} | {kind} | {iterations} | {threads} | "
            f"{'—' if conv is None else f'{conv:.2f}'} | {gap} | "
            f"{'—' if dense is None else f'{dense:.2f}'} | {same} |"
        )


def run_cpu(args: argparse.Namespace, repo) -> None:
    crfs = contenders(repo)
    if args.crfs:
        crfs = {name: crf for name, crf in crfs.items() if name in args.crfs}
    pairs = [pair for pair in PAIRS if all(name in crfs for name in pair)]
    pairs += [(name, None) for name in crfs if not any(name in pair for pair in pairs)]
    kinds = [kind for kind in args.unaries if kind != "demo" or make_demo_possible(repo)]
    results = []
    side = SideBySide(repo) if 1 in args.threads else None
    try:
        for megapixels in args.sizes:
            for kind in kinds:
                case = Case(megapixels, kind, args.seed, args.part)
                photos = make_photos(case, repo)
                for iterations in args.iterations:
                    for threads in args.threads:
                        if threads == 1:
                            runs = side.run(
                                case, [p for p in pairs if p[1]], iterations, args.rounds
                            )
                            single = [name for name, other in pairs if other is None]
                            if single:
                                torch.set_num_threads(1)
                                extra = interleaved(
                                    {n: crfs[n] for n in single}, photos, iterations, args.rounds
                                )
                                runs.seconds.update(extra.seconds)
                                runs.labels.update(extra.labels)
                        else:
                            torch.set_num_threads(threads)
                            runs = interleaved(crfs, photos, iterations, args.rounds)
                        results.append(report(case, iterations, threads, runs, photos, crfs))
                        sys.stdout.flush()
    finally:
        if side is not None:
            side.close()
    summary(results)


def make_demo_possible(repo) -> bool:
    if repo is None:
        print("note: the demo's unaries need the published ConvCRF (--convcrf-repo): skipped")
        return False
    try:
        import skimage  # noqa: F401
    except ImportError:
        print("note: the demo's unaries need scikit-image: skipped")
        return False
    return True


STAGES = {
    "densecrf_torch": [
        "lattice build",
        "lattice splat",
        "lattice blur",
        "lattice slice",
        "compatibility",
        "softmax",
    ],
    "convcrf": ["window weights", "pool", "window product", "upsampling", "softmax"],
}


def run_profile(args: argparse.Namespace, repo) -> None:
    """Where the time of each segkit CRF goes, by stage (the record_function labels of
    its code), with torch.profiler; "other" is the rest: input checks, the unaries,
    memory layouts."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads[0])
    photo = make_photos(Case(args.sizes[0], args.unaries[0], args.seed), repo)[0]
    crfs = contenders(repo)
    iterations = args.iterations[-1]
    for name, stages in STAGES.items():
        prepared = crfs[name].prepare(photo)
        crfs[name].run(prepared, iterations)
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            start, cpu = time.perf_counter(), time.process_time()
            crfs[name].run(prepared, iterations)
            total, cpu = time.perf_counter() - start, time.process_time() - cpu
        found = {event.key: event.cpu_time_total / 1e6 for event in profiler.key_averages()}
        seconds = {stage: found.get(stage, 0.0) for stage in stages}
        seconds["other"] = max(total - sum(seconds.values()), 0.0)
        height, width = photo.labels.shape
        print(
            f"\n#### {name}: {width}×{height}, {args.unaries[0]} unaries, {iterations} "
            f"iterations, {args.threads[0]} thread(s): {total:.3f} s under the profiler "
            f"({cpu:.3f} CPU s)\n"
        )
        print("| stage | s | share |\n|---|---|---|")
        for stage, value in seconds.items():
            print(f"| {stage} | {value:.3f} | {100 * value / total:.0f}% |")


def run_cuda(args: argparse.Namespace, repo) -> None:
    """segkit's two CRFs, and the published ConvCRF on the GPU as its authors run it
    (``use_gpu=True``), on batches of the photographs: median seconds per image over
    ``--rounds`` calls after a warm-up, and mIoU against the labels."""
    build = __import__("segkit").build_postprocessor
    print(f"\n{torch.cuda.get_device_name()}, batches of {args.batch}, {args.rounds} rounds\n")
    print("| CRF | size | unaries | iterations | s / image (median, min–max) | mIoU labels |")
    print("|---|---|---|---|---|---|")
    for megapixels in args.sizes:
        for kind in [k for k in args.unaries if k != "demo"]:
            photos = make_photos(Case(megapixels, kind, args.seed), repo)
            batch = [photos[i % len(photos)] for i in range(args.batch)]
            probs = torch.cat([p.probs for p in batch]).cuda()
            images = torch.cat([p.image for p in batch]).cuda()
            unaries = torch.cat([p.published_unary for p in batch]).cuda()
            truth = torch.stack([p.labels for p in batch]).cuda()
            height, width = probs.shape[-2:]
            for iterations in args.iterations:
                crfs = {
                    "convcrf": build("convcrf", device="cuda", iterations=iterations),
                    "densecrf_torch": build(
                        "densecrf_torch",
                        device="cuda",
                        iterations=iterations,
                        **WIDTHS,
                        **DENSE_WEIGHTS,
                    ),
                }
                inputs = dict.fromkeys(crfs, (probs, images))
                if repo is not None:
                    crfs["published ConvCRF"] = published_on_gpu(repo, (height, width), iterations)
                    inputs["published ConvCRF"] = (unaries, images.float())
                for name, crf in crfs.items():
                    if args.crfs and name not in args.crfs:
                        continue
                    with torch.no_grad():
                        out = crf(*inputs[name])  # warm-up
                        torch.cuda.synchronize()
                        walls = []
                        for _ in range(args.rounds):
                            start = time.perf_counter()
                            out = crf(*inputs[name])
                            torch.cuda.synchronize()
                            walls.append((time.perf_counter() - start) / args.batch)
                    miou = label_iou(out.argmax(1), truth, CLASSES)
                    print(
                        f"| {name} | {width}×{height} | {kind} | {iterations} | "
                        f"{statistics.median(walls):.4f} ({min(walls):.4f}–{max(walls):.4f}) "
                        f"| {miou:.4f} |"
                    )
                    sys.stdout.flush()


def published_on_gpu(repo, shape: tuple[int, int], iterations: int):
    """The published ConvCRF's ``GaussCRF`` on CUDA as its demo builds it there."""
    module = load_published(repo)[0]
    conf = dict(module.default_conf)
    conf["filter_size"] = PUBLISHED_FILTER_SIZE
    crf = module.GaussCRF(conf=conf, shape=shape, nclasses=CLASSES, use_gpu=True).cuda()
    return lambda unary, image: crf.forward(unary=unary, img=image, num_iter=iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--convcrf-repo",
        help="folder of the published ConvCRF code "
        "(default: $SEGKIT_CONVCRF_REPO; none: its rows are skipped)",
    )
    floats = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    parser.add_argument("--sizes", type=floats, default=[0.1, 0.25, 1.0], help="megapixels")
    parser.add_argument("--unaries", type=lambda t: t.split(","), default=list(KINDS))
    parser.add_argument("--iterations", type=ints, default=[5, 10])
    parser.add_argument("--threads", type=ints, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="of the unaries' noise")
    parser.add_argument(
        "--part",
        choices=["whole", "left", "right"],
        default="whole",
        help="the photographs whole or one half (convcrf's defaults were tuned on the left)",
    )
    parser.add_argument("--crfs", type=lambda t: t.split(","), help="only these CRFs")
    parser.add_argument("--profile", action="store_true", help="stages of segkit's CRFs")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=8, help="images per call on CUDA")
    args = parser.parse_args()
    if not example_photos():
        parser.error("the example photographs are missing: set SEGKIT_DENSECRF_EXAMPLES")
    if bad := [k for k in args.unaries if k not in KINDS]:
        parser.error(f"--unaries: unknown kind {bad[0]!r}; choose from {', '.join(KINDS)}")
    repo = convcrf_repo(args.convcrf_repo)
    if args.convcrf_repo and repo is None:
        parser.error(f"--convcrf-repo {args.convcrf_repo}: no convcrf/convcrf.py there")
    print(
        f"# CRFs beside the published codes\n\n{machine_line()}; sizes "
        f"{', '.join('{1}×{0}'.format(*size_of(m)) for m in args.sizes)}; {CLASSES} classes"
    )
    if repo is None:
        print(
            "\nnote: no published ConvCRF (--convcrf-repo or SEGKIT_CONVCRF_REPO): its "
            "rows are skipped"
        )
    else:
        print(f"\npublished ConvCRF from {repo}, filter_size {PUBLISHED_FILTER_SIZE}")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: CUDA is not available here")
        run_cuda(args, repo)
    elif args.profile:
        run_profile(args, repo)
    else:
        run_cpu(args, repo)


if __name__ == "__main__":
    main()
