"""`emergence profile --name NAME --out DIR [--set key=value ...]`: a workspace that runs the
same pipeline on a profile.

DIR gets ``params.yaml`` (the project's, with ``conf/profiles/NAME.yaml`` and the ``--set``
values merged in),
a copy of ``dvc.yaml``, links to ``data/``, ``src/``, ``conf/`` and ``pairs/``, and its own DVC repository,
so ``dvc repro`` there runs every stage on the profile without touching the main
workspace's outputs.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from emergence.config import ConfigError, merged_yaml

log = logging.getLogger(__name__)


def main(args) -> None:
    root = Path.cwd()
    profile = root / "conf" / "profiles" / f"{args.name}.yaml"
    if not profile.exists():
        known = sorted(p.stem for p in profile.parent.glob("*.yaml"))
        raise ConfigError(f"no profile {args.name!r} in {profile.parent} (have {known})")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.yaml").write_text(merged_yaml(root / args.params, profile, args.set))
    shutil.copyfile(root / "dvc.yaml", out / "dvc.yaml")
    for name in ("data", "src", "conf", "pairs"):
        link = out / name
        if not link.exists():
            os.symlink(os.path.relpath(root / name, out), link)
    if not (out / ".dvc").exists():
        dvc = [sys.executable, "-m", "dvc"]
        subprocess.run(dvc + ["init", "--no-scm", "-q"], cwd=out, check=True)
        subprocess.run(dvc + ["config", "core.analytics", "false"], cwd=out, check=True)
    log.info("workspace for profile %s ready in %s: run `dvc repro` there", args.name, out)
