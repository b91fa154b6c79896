"""files.write_atomic: the whole new file or the old one, with the mode asked for."""

from __future__ import annotations

import os
import stat

import pytest

from finance_pipeline.files import write_atomic


def test_a_file_is_replaced_whole_with_the_mode_asked(tmp_path):
    path = tmp_path / "tokens.json"
    write_atomic(path, "first\n")
    write_atomic(path, "second ✓\n", mode=0o600)
    assert path.read_text(encoding="utf-8") == "second ✓\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    write_atomic(path, "third\n", mode=0o644)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "keyring.json"
    write_atomic(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomic(path, "bad \ud800 surrogate\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.json"]
