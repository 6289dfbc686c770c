"""Prints the project's dependencies (pyproject.toml) as a requirements file, with or
without some of them, so that each image installs only what it runs:

    python requirements.py --without torch tensorflow-cpu > requirements.txt
    python requirements.py --only tensorflow-cpu scikit-learn > requirements.txt
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path


def name_of(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=Path("pyproject.toml"))
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--without", nargs="*", default=[], help="leave these out")
    group.add_argument("--only", nargs="*", default=None, help="only these")
    args = parser.parse_args(argv)
    with args.pyproject.open("rb") as fh:
        requirements: list[str] = tomllib.load(fh)["project"]["dependencies"]
    names = {name_of(r): r for r in requirements}
    wanted = [name_of(n) for n in (args.only if args.only is not None else args.without)]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        print(f"not dependencies of the project: {', '.join(unknown)}", file=sys.stderr)
        return 2
    chosen = [r for n, r in names.items() if (n in wanted) == (args.only is not None)]
    print("\n".join(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
