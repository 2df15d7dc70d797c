"""Maildir: crash-safe delivery, LF storage, exact W= sizes, stable uids, quota, safe paths."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailplat.store import maildir as maildir_mod
from mailplat.store.maildir import Maildir, name_field, to_lf, to_wire, uid_of, wire_size
from mailplat.store.paths import check_name, mailbox_dir
from mailplat.store.quota import QuotaTracker

NAME_RE = re.compile(r"^\d+\.M\d+P\d+Q\d+\.[^/:]+,S=(\d+),W=(\d+)$")


@pytest.fixture
def md(tmp_path: Path) -> Maildir:
    box = Maildir(tmp_path / "box")
    box.create()
    return box


def test_create_makes_private_subdirs(tmp_path: Path) -> None:
    box = Maildir(tmp_path / "a" / "box")
    box.create()
    box.create()  # idempotent
    for sub in ("", "tmp", "new", "cur"):
        mode = stat.S_IMODE((box.path / sub).stat().st_mode)
        assert mode == 0o700, sub


def test_deliver_stores_lf_and_names_exact_sizes(md: Maildir) -> None:
    data = b"Subject: hi\r\n\r\nline one\r\nline two\r\n"
    name = md.deliver(data)
    match = NAME_RE.match(name)
    assert match, name
    stored = (md.path / "new" / name).read_bytes()
    assert stored == b"Subject: hi\n\nline one\nline two\n"
    assert int(match.group(1)) == len(stored)
    assert int(match.group(2)) == len(data)  # W= is the CRLF size RETR sends
    assert list((md.path / "tmp").iterdir()) == []


def test_deliver_adds_missing_final_newline_and_folds_bare_cr(md: Maildir) -> None:
    name = md.deliver(b"A: b\r\n\r\nbare\rcr and bare\nlf no end")
    stored = (md.path / "new" / name).read_bytes()
    assert stored == b"A: b\n\nbare\ncr and bare\nlf no end\n"
    [info] = md.messages()
    assert info.size == len(to_wire(stored))
    assert b"\r" not in stored


def test_read_returns_stored_bytes(md: Maildir) -> None:
    uid = md.deliver(b"X: 1\r\n\r\nbody\r\n")
    assert md.read(uid) == b"X: 1\n\nbody\n"
    with pytest.raises(KeyError):
        md.read("nope")


def test_messages_ordered_by_delivery(md: Maildir) -> None:
    uids = [md.deliver(f"N: {i}\r\n\r\n{i}\r\n".encode()) for i in range(25)]
    assert [m.uid for m in md.messages()] == uids


def test_uid_stable_across_new_to_cur_and_new_objects(md: Maildir) -> None:
    uid = md.deliver(b"A: 1\r\n\r\nx\r\n")
    other = md.deliver(b"A: 2\r\n\r\ny\r\n")
    before = md.messages()
    # A MUA (mutt, Dovecot) moves the file and appends flags.
    os.rename(md.path / "new" / uid, md.path / "cur" / f"{uid}:2,RS")
    fresh = Maildir(md.path)
    after = fresh.messages()
    assert [m.uid for m in after] == [uid, other]
    assert [m.size for m in after] == [m.size for m in before]
    assert after[0].path.parent.name == "cur"
    assert fresh.read(uid) == b"A: 1\n\nx\n"


def test_mark_seen_moves_to_cur_keeping_uid(md: Maildir) -> None:
    uid = md.deliver(b"A: 1\r\n\r\nx\r\n")
    md.mark_seen([uid, "missing"])
    assert (md.path / "cur" / f"{uid}:2,S").exists()
    assert [m.uid for m in Maildir(md.path).messages()] == [uid]


def test_foreign_file_without_w_is_measured_once(md: Maildir) -> None:
    raw = b"From: x\r\n\r\n.dot\r\nno end"
    (md.path / "cur" / "1234.foreign:2,S").write_bytes(raw)
    [listed] = md.messages()
    assert listed.uid == "1234.foreign"
    assert listed.size is None  # listing opens no message file
    [info] = md.measure([listed])
    assert info.size == len(b"From: x\r\n\r\n.dot\r\nno end\r\n")
    # Remembered for the process: a later listing (a new session) knows it.
    assert Maildir(md.path).messages()[0].size == info.size


def test_listing_ignores_dotfiles_and_dedupes_mid_move(md: Maildir) -> None:
    uid = md.deliver(b"A: 1\r\n\r\nx\r\n")
    os.link(md.path / "new" / uid, md.path / "cur" / f"{uid}:2,")
    (md.path / "new" / ".hidden").write_bytes(b"x")
    infos = md.messages()
    assert [i.uid for i in infos] == [uid]
    assert infos[0].path.parent.name == "cur"


def test_delete_unlinks_and_tolerates_missing(md: Maildir) -> None:
    a = md.deliver(b"A: 1\r\n\r\nx\r\n")
    b = md.deliver(b"A: 2\r\n\r\ny\r\n")
    size_a = (md.path / "new" / a).stat().st_size
    md.mark_seen([a])
    assert md.delete([a, "never-existed"]) == size_a
    assert [m.uid for m in md.messages()] == [b]
    assert md.delete([a]) == 0


def test_usage_bytes_counts_new_and_cur(md: Maildir) -> None:
    a = md.deliver(b"A: 1\r\n\r\nxx\r\n")
    md.deliver(b"A: 2\r\n\r\nyyy\r\n")
    md.mark_seen([a])
    assert md.usage_bytes() == len(b"A: 1\n\nxx\n") + len(b"A: 2\n\nyyy\n")


def test_failed_write_leaves_nothing_visible(md: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[:3])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(maildir_mod, "_write_all", full)
    with pytest.raises(OSError):
        md.deliver(b"A: 1\r\n\r\nx\r\n")
    monkeypatch.undo()
    assert list((md.path / "tmp").iterdir()) == []
    assert md.messages() == []


def test_fault_points_are_hit_in_order(md: Maildir, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, list[str], list[str]]] = []

    def hook(point: str) -> None:
        seen.append((point, os.listdir(md.path / "tmp"), os.listdir(md.path / "new")))

    monkeypatch.setattr(maildir_mod, "_hook_cache", [hook])
    name = md.deliver(b"A: 1\r\n\r\nx\r\n")
    assert seen == [
        ("maildir.after_tmp_write", [name], []),
        ("maildir.after_link", [name], [name]),
    ]


def test_clean_tmp_removes_only_stale(md: Maildir) -> None:
    old, young = md.path / "tmp" / "old", md.path / "tmp" / "young"
    old.write_bytes(b"x")
    young.write_bytes(b"y")
    os.utime(old, (1, 1))
    assert md.clean_tmp() == 1
    assert [p.name for p in (md.path / "tmp").iterdir()] == ["young"]


@given(st.binary(max_size=300))
def test_wire_size_matches_to_wire(data: bytes) -> None:
    stored = to_lf(data)
    assert b"\r" not in stored
    assert len(stored) + stored.count(b"\n") == len(to_wire(stored))
    assert to_wire(stored) == to_wire(data)


_ENDS = st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"\x00"]), max_size=40)


@given(_ENDS.map(b"".join) | st.binary(max_size=300))
def test_to_wire_is_one_pass_over_crlf_cr_lf(data: bytes) -> None:
    # The reference: every CRLF, lone CR or lone LF is one line end (RFC 5322 CRLF on the wire).
    expected = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if expected and not expected.endswith(b"\r\n"):
        expected += b"\r\n"
    assert to_wire(data) == expected
    assert wire_size(data) == len(expected)


def test_name_fields_and_delivery_order(md: Maildir) -> None:
    assert name_field("1.M2P3Q4.h,S=10,W=12", ",S=") == 10
    assert name_field("1.M2P3Q4.h,S=10,W=12", ",W=") == 12
    assert name_field("1.M2P3.h\\054x,S=x1", ",S=") is None
    for name in ("20.M5P1.dovecot,S=3", "10.123.qmail", "20.M4P1Q9.ours,S=3,W=4", "odd"):
        (md.path / "new" / name).write_bytes(b"abc")
    os.utime(md.path / "new" / "odd", (30, 30))  # no time in the name: its mtime
    listed = md.messages()
    assert [m.uid for m in listed] == [
        "10.123.qmail",
        "20.M4P1Q9.ours,S=3,W=4",
        "20.M5P1.dovecot,S=3",
        "odd",
    ]
    assert [m.size for m in listed] == [None, 4, None, None]
    assert [m.size for m in md.measure(listed)] == [5, 4, 5, 5]


def test_read_small_leaves_big_files_to_a_thread(md: Maildir) -> None:
    small = md.deliver(b"A: 1\r\n\r\nx\r\n")
    big = md.deliver(b"A: 1\r\n\r\n" + b"y" * 5000 + b"\r\n")
    assert md.read_small(small, 4096) == b"A: 1\n\nx\n"
    assert md.read_small(big, 4096) is None
    assert len(md.read(big)) == 5007
    # A name that understates its size is read whole, or left to read() past the limit.
    (md.path / "new" / "5.M1P1.h,S=2").write_bytes(b"0123456789")
    assert md.read_small("5.M1P1.h,S=2", 100) == b"0123456789"
    assert md.read_small("5.M1P1.h,S=2", 5) is None
    with pytest.raises(KeyError):
        md.read_small("gone", 100)


def test_uid_of() -> None:
    assert uid_of("123.M1P2Q3.h,S=1,W=2:2,S") == "123.M1P2Q3.h,S=1,W=2"
    assert uid_of("plain") == "plain"


# -- quota ---------------------------------------------------------------------------


def test_quota_would_exceed_and_tracks_changes(md: Maildir) -> None:
    quota = QuotaTracker()
    assert not quota.would_exceed(md, 10**9, None)
    assert quota.usage(md) == 0
    name = md.deliver(b"A: 1\r\n\r\n" + b"x" * 100 + b"\r\n")
    size = (md.path / "new" / name).stat().st_size
    quota.add(md, size)
    assert quota.usage(md) == size
    assert quota.would_exceed(md, 1, size)
    assert not quota.would_exceed(md, 0, size)
    # A deletion behind the tracker's back (a POP3 QUIT, mutt) is noticed.
    md.delete([name])
    assert quota.usage(md) == 0


def test_quota_remove_and_forget(md: Maildir) -> None:
    quota = QuotaTracker()
    name = md.deliver(b"A: 1\r\n\r\nx\r\n")
    size = quota.usage(md)
    freed = md.delete([name])
    quota.remove(md, freed)
    assert quota.usage(md) == 0 == size - freed
    quota.forget(md)
    assert quota.usage(md) == 0


# -- path safety ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "a.b", "A-Z_09", "x" * 255])
def test_check_name_accepts(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "../etc", "a..b", ".hidden", "a\x00b", "é", "a b", "a\n", "x" * 256],
)
def test_check_name_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        check_name(name)


def test_mailbox_dir_layout(tmp_path: Path) -> None:
    assert mailbox_dir(tmp_path, "example", "alice") == tmp_path / "postoffices/example/alice"
    with pytest.raises(ValueError):
        mailbox_dir(tmp_path, "..", "alice")
    with pytest.raises(ValueError):
        mailbox_dir(tmp_path, "example", "../../etc")


@given(st.text(max_size=40), st.text(max_size=40))
def test_mailbox_dir_never_escapes(po: str, box: str) -> None:
    root = Path("/data")
    try:
        path = mailbox_dir(root, po, box)
    except ValueError:
        return
    assert path.parent.parent == root / "postoffices"
    assert os.path.normpath(path) == str(path)
    for part in (po, box):
        assert re.fullmatch(r"[A-Za-z0-9._-]+", part)
        assert part not in (".", "..") and "/" not in part and "\x00" not in part


@given(st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}", fullmatch=True))
def test_check_name_accepts_all_safe_names(name: str) -> None:
    if ".." in name:
        with pytest.raises(ValueError):
            check_name(name)
    else:
        assert check_name(name) == name


@pytest.mark.parametrize(
    ("point", "visible"), [("maildir.after_tmp_write", 0), ("maildir.after_link", 1)]
)
def test_crash_at_fault_point_never_shows_partial_mail(
    tmp_path: Path, point: str, visible: int
) -> None:
    import subprocess
    import sys

    box = tmp_path / "box"
    code = (
        "from pathlib import Path; from mailplat.store.maildir import Maildir\n"
        f"m = Maildir(Path({str(box)!r})); m.create()\n"
        "m.deliver(b'Subject: crash\\r\\n\\r\\n' + b'x' * 100000 + b'\\r\\n')\n"
    )
    env = {**os.environ, "MAILPLAT_FAULT": f"{point}:1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert done.returncode == 137
    infos = Maildir(box).messages()
    assert len(infos) == visible
    for info in infos:  # whatever is visible is whole
        assert len(to_wire(Maildir(box).read(info.uid))) == info.size
