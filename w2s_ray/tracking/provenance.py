"""Where a search came from: command line, git commit, package versions."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("w2s_ray", "torch", "ray", "mlflow", "optuna", "transformers", "datasets", "peft", "pyarrow")


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, shell-quoted."""
    return " ".join(shlex.quote(a) for a in (sys.argv if argv is None else argv))


def git_commit(repo_dir: Path | None = None) -> tuple[str | None, bool | None]:
    """(HEAD commit, dirty?) of the repository holding w2s_ray; (None, None) outside git."""
    cwd = repo_dir or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        return head.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that decide a result ("absent" if not installed)."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def provenance_tags(argv: list[str] | None = None) -> dict[str, str]:
    """Tags for a search's parent run: `w2s.cli`, `w2s.git_commit`, `w2s.git_dirty`, `w2s.version.<pkg>`."""
    commit, dirty = git_commit()
    tags = {"w2s.cli": command_line(argv), "w2s.git_commit": commit or "unknown", "w2s.git_dirty": str(dirty).lower()}
    tags.update({f"w2s.version.{k}": v for k, v in package_versions().items()})
    return tags
