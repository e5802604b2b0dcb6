"""`mumo generate RUN --text "a red circle" --n 4 --out DIR [--seed S] [--temperature T]`: images from an
image_generation run.

PNGs are written as DIR/<row>-<sample>.png (row and sample from 0); DIR is created, and a file already
there is never overwritten (the command refuses with one line before drawing anything).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mumo.cli_predict import input_row
from mumo.errors import MumoError


def setup(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a finished image_generation run")
    p.add_argument(
        "--text", action="append", default=[], help="what to draw (the run's text input); repeatable"
    )
    p.add_argument(
        "--input", nargs="+", default=[], metavar="COL=VALUE", help="other inputs, e.g. --input label=circle"
    )
    p.add_argument("--n", type=int, default=4, help="images per request (default 4)")
    p.add_argument("--seed", type=int, default=None, help="the same seed gives the same images")
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="scale of the generator's code (task.temperature; below 1: closer to the request, less varied)",
    )
    p.add_argument("--out", required=True, help="folder for the PNGs")


def run(args: argparse.Namespace) -> int:
    import mumo
    from mumo.io import atomic_path

    if args.n < 1:
        raise MumoError(f"--n {args.n}: ask for at least one image")
    model = mumo.load(args.run_dir)
    if args.temperature is not None:
        model = model.with_task_options({"temperature": args.temperature})
    base = input_row(args.input, model.inputs)
    rows = [dict(base)] if not args.text else []
    if args.text:
        texts = [c for c, kind in model.inputs.items() if kind == "text"]
        if len(texts) != 1:
            raise MumoError(
                f"--text: the run has {len(texts)} text inputs; name one with --input COLUMN=TEXT"
            )
        rows = [{**base, texts[0]: text} for text in args.text]
    out = Path(args.out)
    names = [out / f"{i}-{j}.png" for i in range(len(rows)) for j in range(args.n)]
    taken = [p.name for p in names if p.exists()]
    if taken:
        raise MumoError(
            f"--out {out}: already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}; choose another folder"
        )
    images = model.generate(rows, args.n, args.seed)
    out.mkdir(parents=True, exist_ok=True)
    for path, image in zip(names, [image for row in images for image in row], strict=True):
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
    print(f"{len(names)} images → {out}", file=sys.stderr)
    return 0
