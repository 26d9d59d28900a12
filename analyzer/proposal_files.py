"""Writing a proposal's files and committing them: no link followed, nothing overwritten
unless asked, and a failed commit undone (analyzer/propose.py; docs/security.md).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from pgarchitect.errors import UserError

GIT_TIMEOUT = 60.0


def git(repo: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT, env=None if env is None else dict(env),
                              check=False)
    except FileNotFoundError:
        raise UserError("git is not installed") from None
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise UserError(f"git {args[0]} in {repo} failed: {why[-1] if why else done.returncode}")
    return done.stdout.strip()


def identity_env(repo: Path) -> dict[str, str]:
    """The environment for the commit: the repository's identity, or pgarchitect's."""
    env = dict(os.environ)
    for key, var in (("user.name", "GIT_AUTHOR_NAME"), ("user.email", "GIT_AUTHOR_EMAIL")):
        probe = subprocess.run(["git", "-C", str(repo), "config", key], capture_output=True,
                               text=True, timeout=GIT_TIMEOUT, check=False)
        if probe.returncode != 0 or not probe.stdout.strip():
            value = "pgarchitect" if key == "user.name" else "pgarchitect@localhost"
            env.setdefault(var, value)
            env.setdefault(var.replace("AUTHOR", "COMMITTER"), value)
    return env


def write_new(path: Path, text: str, force: bool) -> None:
    """Create `path` with `text`: never through a symbolic link, never over a file unless
    `force` (then a regular file is replaced; a link or anything else is still refused)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    if force and path.is_file() and not path.is_symlink():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        what = "a symbolic link" if path.is_symlink() else "there"
        raise UserError(f"{path} is {what} already: not overwritten"
                        + ("" if path.is_symlink() else " (--force replaces it)")) from None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def refuse_existing(paths: Iterable[Path], force: bool) -> None:
    """Check every output before writing any (a link is refused even with --force)."""
    for path in paths:
        if path.is_symlink():
            raise UserError(f"{path} is a symbolic link: not followed, not overwritten")
        if os.path.lexists(path) and not (force and path.is_file()):
            raise UserError(f"{path} exists already: not overwritten"
                            + (" (--force replaces it)" if path.is_file() else ""))


def current_branch(top: Path) -> tuple[str, bool]:
    """(branch, True) or, on a detached HEAD, (commit, False): where to come back to."""
    done = subprocess.run(["git", "-C", str(top), "symbolic-ref", "--quiet", "--short", "HEAD"],
                          capture_output=True, text=True, timeout=GIT_TIMEOUT, check=False)
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.strip(), True
    return git(top, "rev-parse", "HEAD"), False


def restore(top: Path, start: tuple[str, bool], branch: str, written: Sequence[Path]) -> None:
    """Undo a failed --git proposal: unstage and remove our files, go back, drop the branch.

    Best effort, each step whatever the one before did: the failure itself is what is reported.
    """
    def quiet(*args: str) -> None:
        subprocess.run(["git", "-C", str(top), *args], capture_output=True,
                       timeout=GIT_TIMEOUT, check=False)

    if written:
        quiet("reset", "--quiet", "--", *(str(p.resolve()) for p in written))
    for path in written:
        with contextlib.suppress(OSError):
            path.unlink()
    where, is_branch = start
    if is_branch:
        quiet("switch", "--quiet", where)
    else:
        quiet("switch", "--quiet", "--detach", where)
    quiet("branch", "--quiet", "-D", branch)
