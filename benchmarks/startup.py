"""Start-up time of the small CLI commands against ``python -c "import torch"``.

    python benchmarks/startup.py                 # 5 runs each, medians and ratios
    python benchmarks/startup.py --runs 9 --json startup.json

Each command runs in a fresh process (``sys.executable -m projected_gan ...``), so the numbers
include interpreter start and every import the command pulls in. The goal (issue #18) is
``projected-gan list`` within 1.5x of importing torch alone. Timings on a shared machine are
noisy: the script interleaves the commands run by run and reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, list[str]] = {
    "import torch": ["-c", "import torch"],
    "projected-gan --version": ["-m", "projected_gan", "--version"],
    "projected-gan --help": ["-m", "projected_gan", "--help"],
    "projected-gan list": ["-m", "projected_gan", "list"],
    "projected-gan describe": ["-m", "projected_gan", "describe", "generators", "fastgan"],
    "import projected_gan": ["-c", "import projected_gan"],
}


def time_once(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per command (default 5)")
    parser.add_argument("--json", dest="json_out", help="also write the results here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    for cmd in COMMANDS.values():  # warm the OS file cache once
        time_once(cmd)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            samples[name].append(time_once(cmd))

    base = statistics.median(samples["import torch"])
    results = {
        name: {
            "median_s": round(statistics.median(times), 3),
            "min_s": round(min(times), 3),
            "ratio_to_import_torch": round(statistics.median(times) / base, 2),
        }
        for name, times in samples.items()
    }
    width = max(len(n) for n in results)
    print(f"{'command':<{width}}  median_s  min_s  x import torch")
    for name, r in results.items():
        print(
            f"{name:<{width}}  {r['median_s']:8.3f}  {r['min_s']:5.3f}  "
            f"{r['ratio_to_import_torch']:.2f}"
        )
    report = {
        "runs": args.runs,
        "load_average": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "results": results,
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
