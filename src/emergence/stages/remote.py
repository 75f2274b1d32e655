"""`emergence remote`: the DVC remote that `dvc pull` / `dvc push` would use, checked before use.

``dvc pull`` against a local remote directory that does not exist only says "cache files do not
exist neither locally nor on remote"; this names the remote, its path and the command that
creates it or points elsewhere (``make pull`` runs it first).
"""
from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlparse

from emergence.errors import EmergenceError

log = logging.getLogger(__name__)


class RemoteError(EmergenceError):
    """The DVC remote is not configured, or is a local directory that does not exist."""


def default_remote(root: str | Path = ".") -> tuple[str, str]:
    """(name, url) of the repository's default DVC remote; a local path comes back absolute."""
    from dvc.repo import Repo
    config = Repo(str(root)).config
    name = config["core"].get("remote")
    if not name:
        raise RemoteError("no default DVC remote: add one with `dvc remote add -d NAME PATH_OR_URL` "
                          "(a directory, s3://..., ssh://...)")
    return name, config["remote"][name]["url"]


def check(root: str | Path = ".") -> str:
    """The default remote's URL; raises RemoteError when it is a local directory that does not exist."""
    name, url = default_remote(root)
    if urlparse(url).scheme in ("", "file") and not Path(urlparse(url).path or url).is_dir():
        raise RemoteError(f"DVC remote {name!r} is the directory {url}, which does not exist. Create it with the "
                          f"data (`mkdir -p {url} && dvc push`, on the machine that ran the pipeline), or point "
                          f"{name!r} at an existing copy: `dvc remote modify {name} url PATH_OR_URL`")
    return url


def main(args) -> None:
    log.info("DVC remote: %s", check())
