"""Per-session workspaces: unguessable ids, isolation, quota."""

import pytest

from transfer_core.config import Settings
from transfer_core.sessions.workspace import QuotaExceededError, Workspace


def test_new_workspaces_have_distinct_unguessable_ids(tmp_path):
    settings = Settings(home=tmp_path)
    first, second = Workspace.open(settings), Workspace.open(settings)
    assert first.workspace_id != second.workspace_id
    assert len(first.workspace_id) == 32
    assert first.runs_dir != second.runs_dir


@pytest.mark.parametrize("bad", ["../../etc", "abc", "A" * 32, "../" + "0" * 29])
def test_malformed_ids_from_the_url_never_reach_the_disk(tmp_path, bad):
    workspace = Workspace.open(Settings(home=tmp_path), bad)
    assert workspace.workspace_id != bad
    assert workspace.root.resolve().is_relative_to((tmp_path / "workspaces").resolve())


def test_reopening_by_id_finds_the_same_folder(tmp_path):
    settings = Settings(home=tmp_path)
    first = Workspace.open(settings)
    assert Workspace.open(settings, first.workspace_id).root == first.root


def test_delete_dataset_refuses_paths_outside_the_workspace(tmp_path):
    workspace = Workspace.open(Settings(home=tmp_path))
    outside = tmp_path / "precious"
    outside.mkdir()
    with pytest.raises(ValueError, match="Not a data set"):
        workspace.delete_dataset(outside)
    assert outside.exists()


def test_quota_refuses_uploads_over_the_limit(tmp_path):
    settings = Settings(home=tmp_path, max_session_disk_mb=1)
    workspace = Workspace.open(settings)
    workspace.check_quota(settings, incoming_bytes=100_000)
    (workspace.datasets_dir / "big.bin").write_bytes(b"\0" * 900_000)
    with pytest.raises(QuotaExceededError, match="TRANSFER_MAX_SESSION_DISK_MB"):
        workspace.check_quota(settings, incoming_bytes=200_000)
