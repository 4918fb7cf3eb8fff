"""Instructions per POST or per email, counted by valgrind: the same figure
on every run of the same code, however busy the machine, so that a lever
worth 2 % can be told from noise that swings 20 %.

    .venv/bin/python -m bench.instructions                  # a valid submission
    .venv/bin/python -m bench.instructions --kind honeypot  # any kind of bench.profile_post
    .venv/bin/python -m bench.instructions --email          # one email sent by the outbox

Runs bench.profile_post (or bench.profile_email) twice under valgrind's
cachegrind, without its cache simulation, at two sizes, both at once, and
divides the difference in instructions by the difference in POSTs (or
emails): what setting up costs cancels out. Only this Python process is
counted, not PostgreSQL, Redis or the SMTP sink, nor the kernel's work
for its sockets. Needs valgrind (apt-get install -y valgrind); each run
takes under a minute. A tool for comparing two versions of the code on
one machine, not a target: instructions are not time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path

from .profile_post import KINDS

REPO = Path(__file__).resolve().parent.parent
# profile_post POSTs as many again to warm up as it measures.
SIZES = {"post": (40, 140, 2), "email": (200, 700, 1)}


def instructions(tool: str, size: int, extra: list[str]) -> int:
    flag = "--posts" if tool == "post" else "--emails"
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--trace-children=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        f"bench.profile_{tool}",
        flag,
        str(size),
        "--json",
        *extra,
    ]
    # A fixed hash seed: the same dict layouts, so the same count each run.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, check=False)  # noqa: S603
    match = re.search(r"I\s+refs:\s+([\d,]+)", result.stderr)
    if result.returncode != 0 or match is None:
        raise SystemExit(f"valgrind run failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return int(match[1].replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="valid", choices=KINDS)
    parser.add_argument("--email", action="store_true", help="an outbox email instead of a POST")
    args = parser.parse_args()
    tool = "email" if args.email else "post"
    extra = ["--no-profile"] if args.email else ["--kind", args.kind]
    small, large, runs_per_size = SIZES[tool]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        low, high = pool.map(lambda size: instructions(tool, size, extra), (small, large))
    per = (high - low) / ((large - small) * runs_per_size)
    what = "email" if args.email else f"{args.kind} POST"
    print(f"{per / 1e6:.3f} M instructions per {what}")


if __name__ == "__main__":
    main()
