"""Fetching sources: local copies, archives, https with checksum, Kaggle, safety and atomicity."""

import hashlib
import io
import os
import stat
import sys
import tarfile
import types
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from medcls.data import sources
from medcls.data.sources import SourceUnavailableError, UnsafeArchiveError, fetch

FILES = {"data/a.txt": b"alpha", "data/sub/b.txt": b"beta"}


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return path


def make_tar(
    path: Path, members: list[tarfile.TarInfo], contents: dict[str, bytes] | None = None
) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for member in members:
            content = (contents or {}).get(member.name, b"")
            member.size = len(content) if member.isfile() else 0
            archive.addfile(member, io.BytesIO(content) if member.isfile() else None)
    return path


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, link
    return member


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def serve(monkeypatch: pytest.MonkeyPatch, archive: Path) -> list[str]:
    """Answer every https request with the local archive, through a real file:// response."""
    requested: list[str] = []

    def fake_urlopen(url: str, timeout: float):
        requested.append(url)
        return urllib.request.urlopen(archive.as_uri())

    monkeypatch.setattr(sources, "urlopen", fake_urlopen)
    return requested


def assert_nothing_left_behind(dest: Path) -> None:
    assert not dest.exists() and not (dest.parent / f".{dest.name}.partial").exists()


def test_local_directory_is_copied_following_symlinks(tmp_path: Path) -> None:
    source = tmp_path / "source"
    for name, content in FILES.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(content)
    (tmp_path / "elsewhere.txt").write_bytes(b"linked")
    (source / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    fetch(str(source), tmp_path / "raw" / "ds")
    copied = tmp_path / "raw" / "ds"
    assert (
        tree(copied) == {**FILES, "link.txt": b"linked"} and not (copied / "link.txt").is_symlink()
    )


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_local_archives_are_extracted(tmp_path: Path, kind: str) -> None:
    if kind == "zip":
        archive = make_zip(tmp_path / "data.zip", FILES)
    else:
        archive = make_tar(tmp_path / "data.tgz", [tar_member(name) for name in FILES], FILES)
    fetch(str(archive), tmp_path / "ds")
    assert tree(tmp_path / "ds") == FILES


def test_missing_local_path_says_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError, match=r"nowhere.*does not exist.*kaggle:<owner>/<dataset>"
    ):
        fetch(str(tmp_path / "nowhere"), tmp_path / "ds")
    assert_nothing_left_behind(tmp_path / "ds")


def test_non_archive_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a zip or tar archive"):
        fetch(str(tmp_path / "notes.txt"), tmp_path / "ds")
    assert_nothing_left_behind(tmp_path / "ds")


@pytest.mark.parametrize("name", ["../evil.txt", "data/../../evil.txt", "/tmp/evil.txt"])
def test_zip_slip_is_rejected(tmp_path: Path, name: str) -> None:
    archive = make_zip(tmp_path / "evil.zip", {"data/ok.txt": b"ok", name: b"evil"})
    with pytest.raises(UnsafeArchiveError, match=name.replace(".", r"\.")):
        fetch(str(archive), tmp_path / "out" / "ds")
    assert_nothing_left_behind(tmp_path / "out" / "ds")
    assert not (tmp_path / "evil.txt").exists()


def test_zip_symlink_escape_is_rejected(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("data/escape")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(link, "../../outside")
    with pytest.raises(UnsafeArchiveError, match="data/escape"):
        fetch(str(archive), tmp_path / "out" / "ds")
    assert_nothing_left_behind(tmp_path / "out" / "ds")


@pytest.mark.parametrize(
    "member",
    [
        tar_member("data/escape", tarfile.SYMTYPE, "../../outside"),
        tar_member("data/absolute", tarfile.SYMTYPE, "/etc/passwd"),
        tar_member("data/hard", tarfile.LNKTYPE, "../outside"),
        tar_member("../escape.txt"),
    ],
    ids=["symlink-up", "symlink-absolute", "hardlink-up", "dotdot-name"],
)
def test_tar_escapes_are_rejected(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", [tar_member("data/ok.txt"), member])
    with pytest.raises(UnsafeArchiveError, match=member.name):
        fetch(str(archive), tmp_path / "out" / "ds")
    assert_nothing_left_behind(tmp_path / "out" / "ds")


def test_links_inside_the_archive_are_allowed(tmp_path: Path) -> None:
    members = [tar_member("data/a.txt"), tar_member("data/sub/link", tarfile.SYMTYPE, "../a.txt")]
    fetch(str(make_tar(tmp_path / "ok.tar.gz", members, {"data/a.txt": b"alpha"})), tmp_path / "ds")
    assert (tmp_path / "ds" / "data" / "sub" / "link").read_bytes() == b"alpha"


def test_https_archive_is_downloaded_verified_and_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_zip(tmp_path / "data.zip", FILES)
    requested = serve(monkeypatch, archive)
    fetch(f"https://example.org/data.zip#sha256={sha256_of(archive)}", tmp_path / "ds")
    assert requested == ["https://example.org/data.zip"] and tree(tmp_path / "ds") == FILES


def test_https_without_checksum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="#sha256="):
        fetch("https://example.org/data.zip", tmp_path / "ds")


def test_checksum_mismatch_keeps_the_previous_dest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "ds"
    dest.mkdir()
    (dest / "old.txt").write_text("previous fetch")
    serve(monkeypatch, make_zip(tmp_path / "data.zip", FILES))
    with pytest.raises(ValueError, match="expected 0{64}"):
        fetch(f"https://example.org/data.zip#sha256={'0' * 64}", dest)
    assert tree(dest) == {"old.txt": b"previous fetch"}
    assert not (tmp_path / ".ds.partial").exists()


def test_interrupted_fetch_keeps_the_previous_dest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "ds"
    dest.mkdir()
    (dest / "old.txt").write_text("previous fetch")

    def interrupted(archive: Path, target: Path) -> None:
        target.mkdir()
        (target / "half.txt").write_text("half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(sources, "_extract", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch(str(make_zip(tmp_path / "data.zip", FILES)), dest)
    assert tree(dest) == {"old.txt": b"previous fetch"}
    assert not (tmp_path / ".ds.partial").exists()


def test_stale_partial_is_cleaned_and_dest_replaced(tmp_path: Path) -> None:
    dest, partial = tmp_path / "ds", tmp_path / ".ds.partial"
    (dest / "old").mkdir(parents=True)
    (partial / "junk").mkdir(parents=True)
    fetch(str(make_zip(tmp_path / "data.zip", FILES)), dest)
    assert tree(dest) == FILES and not partial.exists()


def test_unreachable_url_explains_the_offline_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, timeout: float):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(sources, "urlopen", offline)
    with pytest.raises(
        SourceUnavailableError, match=r"could not be reached.*datasets\.busi\.source=/path/to/copy"
    ):
        fetch(f"https://example.org/data.zip#sha256={'0' * 64}", tmp_path / "busi")
    assert_nothing_left_behind(tmp_path / "busi")


def fake_kagglehub(monkeypatch: pytest.MonkeyPatch, download) -> None:
    monkeypatch.setitem(sys.modules, "kagglehub", types.SimpleNamespace(dataset_download=download))


def test_kaggle_download_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    (cache / "BUS_UC").mkdir(parents=True)
    (cache / "BUS_UC" / "x.png").write_bytes(b"png")
    handles: list[str] = []
    fake_kagglehub(monkeypatch, lambda handle: handles.append(handle) or str(cache))
    fetch("kaggle:owner/bus-uc/versions/3", tmp_path / "ds")
    assert handles == ["owner/bus-uc/versions/3"] and tree(tmp_path / "ds") == {
        "BUS_UC/x.png": b"png"
    }
    assert (cache / "BUS_UC" / "x.png").exists()  # kagglehub's cache is left intact


def test_kaggle_failure_explains_the_offline_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(handle: str) -> str:
        raise ConnectionError("Failed to establish a new connection")

    fake_kagglehub(monkeypatch, offline)
    with pytest.raises(
        SourceUnavailableError,
        match=r"could not be reached.*dvc exp run -S 'datasets\.bus_uc\.source=",
    ):
        fetch("kaggle:owner/bus-uc", tmp_path / "bus_uc")
    assert_nothing_left_behind(tmp_path / "bus_uc")


def test_bad_kaggle_handle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kaggle:<owner>/<dataset>"):
        fetch("kaggle:just-a-name", tmp_path / "ds")


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def test_fingerprint_of_a_local_folder_changes_with_its_files_only(tmp_path: Path) -> None:
    source = write_tree(tmp_path / "source", FILES)
    first = sources.fingerprint(str(source))
    assert first["files"] == 2 and first["bytes"] == len(b"alpha") + len(b"beta")
    assert sources.fingerprint(str(source)) == first
    (source / "data/c.txt").write_bytes(b"gamma")
    added = sources.fingerprint(str(source))
    assert added["files"] == 3 and added["listing_sha256"] != first["listing_sha256"]
    (source / "data/c.txt").unlink()
    assert sources.fingerprint(str(source)) == first
    modified = (source / "data/a.txt").stat().st_mtime_ns + 10**9
    (source / "data/a.txt").write_bytes(b"ALPHA")  # same size, another modification time
    os.utime(source / "data/a.txt", ns=(modified, modified))
    assert sources.fingerprint(str(source))["listing_sha256"] != first["listing_sha256"]


def test_fingerprint_follows_links_as_the_copy_does(tmp_path: Path) -> None:
    real = write_tree(tmp_path / "real", FILES)
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "linked").symlink_to(real, target_is_directory=True)
    assert sources.fingerprint(str(tmp_path / "source"))["files"] == 2
    fetch(str(tmp_path / "source"), tmp_path / "raw")
    assert len(tree(tmp_path / "raw")) == 2


def test_fingerprint_of_a_local_archive_and_of_remote_sources(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "data.zip", FILES)
    assert sources.fingerprint(str(archive))["files"] == 1
    for remote in ("kaggle:owner/set/versions/3", f"https://example.org/a.zip#sha256={'0' * 64}"):
        assert sources.fingerprint(remote) == {"source": remote}  # pinned: nothing to look at
    with pytest.raises(FileNotFoundError, match="does not exist; accepted sources"):
        sources.fingerprint(str(tmp_path / "gone"))


def test_only_an_unpinned_kaggle_source_is_warned_about() -> None:
    assert "/versions/<N>" in sources.unpinned_kaggle_warning("kaggle:owner/set")
    assert sources.unpinned_kaggle_warning("kaggle:owner/set/versions/2") is None
    assert sources.unpinned_kaggle_warning("/data/set.zip") is None
