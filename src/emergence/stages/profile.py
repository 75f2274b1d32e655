"""`emergence profile --name NAME [--set key=value ...] [--out DIR]`: params.yaml for a profile.

The parameters are ``conf/config.yaml`` with ``conf/profile/NAME.yaml`` and the ``--set`` values
composed by Hydra, exactly as ``dvc exp run -S profile=NAME -S key=value`` composes them.

- ``--out .`` (the project root) rewrites the project's params.yaml (``make params``).
- Any other DIR becomes a separate workspace: params.yaml, a copy of ``dvc.yaml``, links to
  ``data/``, ``src/``, ``conf/`` and ``pairs/``, and its own git and DVC repository (so
  ``dvc repro``, ``dvc exp run``, ``dvc exp show`` and ``dvc params diff`` work there) without
  touching the main workspace's outputs.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from emergence.config import compose

log = logging.getLogger(__name__)
HEADER = ("# Composed by Hydra from conf/config.yaml and conf/profile/{name}.yaml{sets}: edit those, then\n"
          "# `make params` (default) or `emergence profile --name {name}`; `dvc exp run -S profile=NAME` composes too.\n")
IGNORED = "/.cache/\n/wandb/\n"
GIT_ID = ["-c", "user.name=emergence", "-c", "user.email=emergence@localhost"]


def main(args) -> None:
    root = Path.cwd()
    out = Path(args.out).resolve()
    sets = f" with {' '.join(args.set)}" if args.set else ""
    text = HEADER.format(name=args.name, sets=sets) + compose(args.name, args.set)
    if out == root:
        (root / "params.yaml").write_text(text)
        log.info("params.yaml: profile %s%s", args.name, sets)
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.yaml").write_text(text)
    shutil.copyfile(root / "dvc.yaml", out / "dvc.yaml")
    for name in ("data", "src", "conf", "pairs"):
        link = out / name
        if not link.exists():
            os.symlink(os.path.relpath(root / name, out), link)
    if not (out / ".git").exists():
        (out / ".gitignore").write_text(IGNORED)
        dvc = [sys.executable, "-m", "dvc"]
        subprocess.run(["git", "init", "-q"], cwd=out, check=True)
        subprocess.run(dvc + ["init", "-q"], cwd=out, check=True)
        for key, value in (("core.analytics", "false"), ("hydra.enabled", "true")):
            subprocess.run(dvc + ["config", key, value], cwd=out, check=True)
        subprocess.run(["git", "add", "-A"], cwd=out, check=True)
        subprocess.run(["git", *GIT_ID, "commit", "-q", "-m", f"workspace for profile {args.name}"], cwd=out,
                       check=True)
    log.info("workspace for profile %s ready in %s: run `dvc repro` (or `dvc exp run -S key=value`) there",
             args.name, out)
