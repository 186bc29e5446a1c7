"""ragkit.atomic: which paths a whole-folder writer may fill."""

from __future__ import annotations

import pytest

from ragkit.atomic import atomic_folder, is_free_folder


def _absent(tmp_path):
    return tmp_path / "new"


def _empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _dotfile(tmp_path):
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".keep").write_text("")
    return tmp_path / "hidden"


def _file(tmp_path):
    (tmp_path / "file").write_text("x")
    return tmp_path / "file"


def _dangling_link(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    return tmp_path / "link"


def _link_to_empty(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "target")
    return tmp_path / "link"


@pytest.mark.parametrize(
    ("make", "free"),
    [
        (_absent, True),
        (_empty, True),
        (_dotfile, False),
        (_file, False),
        (_dangling_link, False),
        (_link_to_empty, False),
    ],
)
def test_only_an_absent_path_or_an_empty_real_folder_is_free(tmp_path, make, free):
    assert is_free_folder(make(tmp_path)) is free


def test_a_free_empty_folder_is_filled_and_a_failed_write_leaves_it_as_it_was(tmp_path):
    target = _empty(tmp_path)
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "half").write_text("written before the failure")
        raise RuntimeError("failed midway")
    assert target.is_dir() and not any(target.iterdir())
    with atomic_folder(target) as tmp:
        (tmp / "whole").write_text("done")
    assert (target / "whole").read_text() == "done"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
