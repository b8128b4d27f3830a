"""Where the project keeps things: the data lake, run outputs and Hydra configs.

Every path a user can name (a run id, a dataset id, a file to serve) is resolved here and checked to stay
inside its root, so user input can never reach files outside the project's folders.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tradelab_jax.errors import UserError

PACKAGE_DIR = Path(__file__).resolve().parent
# In a checkout (editable install) the repo root holds conf/, data/ and outputs/.
REPO_ROOT = PACKAGE_DIR.parent

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")


def conf_dir() -> Path:
    """The Hydra config directory shipped with the project."""
    return REPO_ROOT / "conf"


def read_preset(name_or_path: str | os.PathLike, group: str, what: str) -> tuple[Path, Any]:
    """``(path, parsed YAML)`` of a settings file, or of the preset ``conf/<group>/<name>.yaml`` named
    without a suffix; one sentence (``what``: e.g. "stream config") for a missing file or invalid YAML."""
    import yaml

    from tradelab_jax.errors import UserError

    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = conf_dir() / group / f"{name_or_path}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))
        raise UserError(f"{what} {str(name_or_path)!r} is neither a file nor a preset of conf/{group}/ "
                        f"({', '.join(names) or 'none'})")
    try:
        return path, yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise UserError(f"{what} {path} is not valid YAML ({str(err).splitlines()[0]})") from None


def default_lake() -> Path:
    """The data lake: ``$TRADELAB_LAKE`` if set, else the repo's ``data/``."""
    env = os.environ.get("TRADELAB_LAKE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "data"


def resolve_lake(lake: str | os.PathLike | None) -> Path:
    """A lake given on the command line or in code, falling back to :func:`default_lake`."""
    return Path(lake).expanduser().resolve() if lake else default_lake()


def default_outputs() -> Path:
    """Run outputs: ``$TRADELAB_OUTPUTS`` if set, else the repo's ``outputs/``."""
    env = os.environ.get("TRADELAB_OUTPUTS")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "outputs"


def check_id(value: str, what: str = "id") -> str:
    """Refuse ids that could escape a folder (``..``, slashes) or are not plain names."""
    if not isinstance(value, str) or not _SAFE_ID.match(value) or ".." in value:
        raise UserError(
            f"invalid {what} {value!r}: use 1-128 letters, digits, '.', '_', '=' or '-', "
            "starting with a letter or digit"
        )
    return value


# Folders a command must never write its files into (the filesystem root and the system's own trees).
SYSTEM_DIRS = frozenset({"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run",
                         "/sbin", "/sys", "/usr", "/var"})


def check_output_dir(path: str | os.PathLike, what: str) -> Path:
    """A folder a command will create or write into, checked before anything is written: not a file or
    device, not a system folder, creatable (its nearest existing parent is a writable folder).

    ``what`` names the flag or key in the sentence (``run.outputs``, ``--out``). Returns the resolved path.
    """
    resolved = Path(path).expanduser().resolve()
    if str(resolved) in SYSTEM_DIRS:
        raise UserError(f"{what}={str(path)!r} is a system folder ({resolved}); give a folder of your own")
    if resolved.exists() and not resolved.is_dir():
        raise UserError(f"{what}={str(path)!r} is not a folder ({resolved} is a file or device); give a "
                        "folder path")
    parent = resolved
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{what}={str(path)!r} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{what}={str(path)!r} cannot be written: no write permission in {parent}")
    return resolved


def inside(root: str | os.PathLike, *parts: str) -> Path:
    """``root/parts...`` resolved, refusing any result outside ``root`` (path traversal)."""
    root_path = Path(root).resolve()
    candidate = root_path.joinpath(*parts).resolve()
    if candidate != root_path and root_path not in candidate.parents:
        raise UserError(f"path {'/'.join(parts)!r} is outside {root_path}; only files inside it are allowed")
    return candidate
