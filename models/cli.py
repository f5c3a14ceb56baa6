"""``wattgate models list|show|register|promote|retire`` on the on-disk registry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("models", help="the model registry")
    p.add_argument("--repository", type=Path, help="model repository (default: settings models.repository)")
    p.add_argument("--config", type=Path, help="YAML settings file")
    ms = p.add_subparsers(dest="models_command", required=True)
    ms.add_parser("list", help="every model version with its stage")
    s = ms.add_parser("show", help="a version's model card as JSON")
    s.add_argument("name")
    s.add_argument("version", nargs="?")
    r = ms.add_parser("register", help="register an ONNX file as a new version")
    r.add_argument("name")
    r.add_argument("version")
    r.add_argument("onnx", type=Path, nargs="+", help="ONNX file(s); with several, name variants by file stem")
    r.add_argument("--variant", help="variant name for a single file (default: the file stem)")
    r.add_argument("--owner", default="unknown")
    r.add_argument("--description", default="")
    for cmd in ("promote", "retire"):
        c = ms.add_parser(cmd, help=f"{cmd} a version")
        c.add_argument("name")
        c.add_argument("version")


def run(args: argparse.Namespace) -> int:
    from models.registry import ModelRegistry
    from wattgate.settings import load_settings

    repo = args.repository or load_settings(args.config).models.repository
    reg = ModelRegistry(repo)
    cmd = args.models_command
    if cmd == "list":
        rows = [(c.name, c.version, c.stage, ",".join(sorted(c.variants)), c.owner) for c in reg.list_models()]
        print(f"{'name':20} {'version':10} {'stage':11} {'variants':24} owner")
        for r in rows:
            print(f"{r[0]:20} {r[1]:10} {r[2]:11} {r[3]:24} {r[4]}")
    elif cmd == "show":
        print(json.dumps(reg.show(args.name, args.version).model_dump(mode="json"), indent=2))
    elif cmd == "register":
        if args.variant and len(args.onnx) > 1:
            print("--variant names a single file; with several files the variant is each file's stem")
            return 2
        variants = {args.variant or p.stem: p for p in args.onnx}
        card = reg.register(args.name, args.version, variants, owner=args.owner, description=args.description)
        print(f"registered {card.name}:{card.version} variants {sorted(card.variants)} (stage {card.stage})")
    elif cmd in ("promote", "retire"):
        card = getattr(reg, cmd)(args.name, args.version)
        print(f"{card.name}:{card.version} is now {card.stage}")
    return 0
