"""Peak memory of the CRFs above their inputs, by image size, each run in a fresh process.

For each CRF and size a new process makes the inputs (21 classes of probabilities and
an image, as ``crf_data.make_inputs``), reads its peak resident memory, refines once,
and reads the peak again: the difference is what the CRF itself needed at its worst::

    python benchmarks/crf_memory.py [--sizes 0.25,1,4] [--crfs convcrf,densecrf_torch]

(pydensecrf, the ``densecrf`` post-processor, refines in a worker process, whose peak
includes the pages it shares with its parent: it is left out.)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

CLASSES = 21


def measure(name: str, megapixels: float) -> dict:
    """In this process: the peak RSS growth of one refinement, in MiB."""
    import torch
    from crf_contenders import DENSE_WEIGHTS, WIDTHS
    from crf_data import make_inputs, size_of

    import segkit

    torch.set_num_threads(1)
    height, width = size_of(megapixels)
    probs, images = make_inputs(1, CLASSES, height, width)
    settings = {} if name == "convcrf" else {**WIDTHS, **DENSE_WEIGHTS}
    crf = segkit.build_postprocessor(name, iterations=5, **settings)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    crf(probs, images)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"crf": name, "size": f"{width}×{height}", "mib": (after - before) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.25,1,4", help="megapixels")
    parser.add_argument("--crfs", default="convcrf,densecrf_torch")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # CRF MP: the child's task
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], float(args.one[1]))))
        return
    print("| CRF | image | peak RSS above the inputs (MiB) |\n|---|---|---|")
    for megapixels in args.sizes.split(","):
        for name in args.crfs.split(","):
            child = subprocess.run(
                [sys.executable, __file__, "--one", name, megapixels],
                capture_output=True,
                text=True,
                cwd=Path(__file__).parent,
            )
            if child.returncode:
                print(f"| {name} | {megapixels} MP | failed: {child.stderr.strip()[-200:]} |")
                continue
            found = json.loads(child.stdout.splitlines()[-1])
            print(f"| {name} | {found['size']} | {found['mib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
