"""`propose` writes no file through a link, overwrites nothing unless --force, and a failed
`--git` commit leaves the repository as it found it (pure: no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from analyzer import lifecycle
from analyzer.propose import propose
from analyzer.recommend.model import Recommendation
from pgarchitect.config import AnalyzerSettings
from pgarchitect.errors import UserError
from tests.analyzer.test_recommendations_cli import git, new_repo

SETTINGS = AnalyzerSettings()
REC = Recommendation(kind="create_index", table="public.orders", columns=("created_at",),
                     ddl="CREATE INDEX CONCURRENTLY orders_created_at_idx ON public.orders "
                         "USING btree (created_at)",
                     revert_ddl="DROP INDEX CONCURRENTLY public.orders_created_at_idx",
                     rationale="faster", confidence=0.9, queryids=("1",))
STEM = "pgarchitect_7_create_index_public_orders"


def _stored() -> lifecycle.StoredRecommendation:
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    return lifecycle.StoredRecommendation(
        id=7, target="app", status="proposed", recommendation=REC, audit_id=3, created_at=now,
        last_seen_at=now, times_seen=1, status_changed_at=now)


def test_a_symlink_named_like_the_migration_is_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{STEM}.sql").symlink_to(victim)
    for force in (False, True):
        with pytest.raises(UserError, match="symbolic link"):
            propose(_stored(), out, SETTINGS, force=force)
    assert victim.read_text() == "precious\n"
    assert not (out / f"{STEM}.md").exists()  # nothing written when one output is refused
    (out / f"{STEM}.sql").unlink()
    (out / f"{STEM}.md").symlink_to(tmp_path / "dangling")
    with pytest.raises(UserError, match="symbolic link"):
        propose(_stored(), out, SETTINGS)
    assert not (tmp_path / "dangling").exists()


def test_an_existing_file_is_an_error_unless_force(tmp_path: Path) -> None:
    first = propose(_stored(), tmp_path, SETTINGS)
    assert first.migration is not None
    first.migration.write_text("edited by hand\n")
    with pytest.raises(UserError, match=r"exists already.*--force"):
        propose(_stored(), tmp_path, SETTINGS)
    assert first.migration.read_text() == "edited by hand\n"
    again = propose(_stored(), tmp_path, SETTINGS, force=True)
    assert again.migration is not None and "CREATE INDEX CONCURRENTLY" in \
        again.migration.read_text()


@pytest.mark.parametrize("detached", [False, True], ids=["branch", "detached"])
def test_a_refused_commit_restores_the_branch_and_unstages(tmp_path: Path,
                                                          detached: bool) -> None:
    repo = new_repo(tmp_path / "app")
    if detached:
        git(repo, "switch", "--quiet", "--detach", "HEAD")
    (repo / "wip.txt").write_text("someone's work\n")
    git(repo, "add", "wip.txt")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'no migrations on Fridays' >&2\nexit 1\n")
    hook.chmod(0o755)
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(UserError, match=r"git commit .* failed: no migrations on Fridays"):
        propose(_stored(), Path("db/migrations"), SETTINGS, repo)
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "branch", "--show-current") == ("" if detached else "main")
    assert git(repo, "branch", "--list", "pgarchitect/*") == ""
    assert git(repo, "diff", "--cached", "--name-only") == "wip.txt"  # theirs, still staged
    assert not (repo / "db" / "migrations" / f"{STEM}.sql").exists()
    hook.unlink()
    result = propose(_stored(), Path("db/migrations"), SETTINGS, repo)  # now it goes through
    assert result.commit is not None and result.branch == "pgarchitect/recommendation-7"
