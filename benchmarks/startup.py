"""Start-up of the commands that should answer at once: wall and CPU time, and imports.

    python benchmarks/startup.py                       # this checkout's segkit
    python benchmarks/startup.py --rounds 9 \\
        before=/path/to/other/.venv/bin/segkit@/path/to/other \\
        after=.venv/bin/segkit@.

Each command (``segkit --help``, ``segkit plugins``, ``segkit config FILE``) runs in a
fresh process, the installations taking turns within each round, so that a machine
shared with other work slows them alike; the medians over the rounds are printed with
the CPU model and the load average.  ``--importtime`` also prints, per installation
and command, the modules whose import took longest (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = (("--help",), ("plugins",), ("config", "configs/folder.toml"))


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = re.search(r"model name\s*:\s*(.+)", text)
    return f"{model.group(1).strip() if model else 'unknown CPU'}, {os.cpu_count()} cores"


def timed(executable: str, cwd: str, command: tuple[str, ...]) -> tuple[float, float, float]:
    """(wall, user CPU, system CPU) seconds of one run of ``segkit COMMAND``."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [executable, *command], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{executable} {' '.join(command)} exited {process.returncode}")
    return wall, usage.ru_utime, usage.ru_stime


def import_profile(executable: str, cwd: str, command: tuple[str, ...], top: int) -> str:
    """The ``top`` slowest imports of one run, cumulative, as ``-X importtime`` reports."""
    python = Path(executable).with_name("python")
    script = "import sys; from segkit.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run(
        [str(python), "-X", "importtime", "-c", script, *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    rows = re.findall(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", done.stderr)
    own = Counter()
    for self_us, _, _, name in rows:
        own[name.split(".")[0]] += int(self_us)
    total = sum(own.values())
    lines = [f"    all imports {total / 1000:.0f} ms (self time, by top-level package):"]
    lines += [f"    {us / 1000:7.1f} ms  {name}" for name, us in own.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "installations",
        nargs="*",
        metavar="LABEL=SEGKIT@DIR",
        help="segkit executables to compare, each run from DIR (default: this checkout's)",
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--importtime", action="store_true", help="also profile the imports")
    parser.add_argument("--top", type=int, default=12, help="imports listed per profile")
    args = parser.parse_args()
    installations = [_parse(text) for text in args.installations] or [
        ("this", str(Path(sys.executable).with_name("segkit")), str(ROOT))
    ]
    print(f"{cpu_model()}; load average before: {os.getloadavg()[0]:.2f}")
    times: dict[tuple[str, tuple[str, ...]], list[tuple[float, float, float]]] = {}
    for _ in range(args.rounds):
        for command in COMMANDS:
            for label, executable, cwd in installations:
                times.setdefault((label, command), []).append(timed(executable, cwd, command))
    print(f"load average after: {os.getloadavg()[0]:.2f}; medians of {args.rounds} rounds")
    print(f"{'installation':<14}{'command':<36}{'wall s':>8}{'user s':>8}{'sys s':>8}")
    for command in COMMANDS:
        for label, _, _ in installations:
            runs = times[(label, command)]
            wall, user, system = (statistics.median(r[i] for r in runs) for i in range(3))
            shown = "segkit " + " ".join(command)
            print(f"{label:<14}{shown:<36}{wall:8.2f}{user:8.2f}{system:8.2f}")
    if args.importtime:
        for command in COMMANDS:
            for label, executable, cwd in installations:
                print(f"{label}: segkit {' '.join(command)}")
                print(import_profile(executable, cwd, command, args.top))


def _parse(text: str) -> tuple[str, str, str]:
    label, _, rest = text.partition("=")
    executable, _, cwd = rest.partition("@")
    if not executable:
        raise SystemExit(f"{text!r}: write LABEL=SEGKIT@DIR, e.g. after=.venv/bin/segkit@.")
    return label, str(Path(executable).resolve()), cwd or "."


if __name__ == "__main__":
    main()
