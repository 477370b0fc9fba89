"""``python -m calibration build --source PATH [--split train] --num 300 [--seed 0] --out calib.npz``.

Also ``python -m calibration show calib.npz`` (verifies the file and prints its manifest).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from emonext_edge.argtypes import check_args, data_path, positive_int
from emonext_edge.cli_support import cli_entry

from .calib_file import DEFAULT_CALIBRATION_SIZE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m calibration", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="select, preprocess and store calibration images")
    build.add_argument("--source", required=True,
                       help="FER2013 CSV, ImageFolder tree (<split>/<Class>/*), folder of faces, or a video")
    build.add_argument("--split", default="train", help="split of a CSV/ImageFolder source (default: train)")
    build.add_argument("--num", type=int, default=DEFAULT_CALIBRATION_SIZE,
                       help=f"number of images (default: {DEFAULT_CALIBRATION_SIZE}, NNCF's default subset size)")
    build.add_argument("--seed", type=int, default=0, help="selection seed (default: 0)")
    build.add_argument("--out", required=True, help="output .npz file")
    show = sub.add_parser("show", help="verify a calib.npz and print its manifest")
    show.add_argument("file", help="calib.npz written by `python -m calibration build`")
    return parser


@cli_entry
def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    check_args(args, num=positive_int, source=data_path)
    from .calib_file import build_calibration, describe
    from .datasets import DataError

    if args.command == "show":
        print(describe(args.file))
        return 0
    if not str(args.out).lower().endswith(".npz"):
        raise DataError(f"{args.out}: --out must end with .npz")
    if args.num < 1:
        raise DataError(f"--num must be >= 1, got {args.num}")
    from emonext_edge.fileio import prepare_output_dir

    prepare_output_dir(Path(args.out).parent, option="--out", given=args.out)
    tensors, manifest = build_calibration(args.source, num=args.num, seed=args.seed, split=args.split, out=args.out)
    skipped = manifest["skipped"]
    print(f"wrote {args.out}: {tensors.shape[0]} images from {manifest['source']} ({manifest['kind']}, "
          f"split {manifest['split']}), seed {manifest['seed']}, per class {manifest['class_counts']}, "
          f"skipped {skipped}, sha256 {manifest['tensor_sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
