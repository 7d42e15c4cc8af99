"""Fetch a raw dataset (Kaggle, a checksummed https archive, or a local copy) into a directory.

The result is built beside `dest` and only renamed into place once complete, so an interrupted or
failed fetch never leaves a half-filled `dest` that a later DVC run would trust. Archives are extracted
only after every member is checked to stay inside the destination (no zip-slip, no escaping links).

`fingerprint` says, without fetching, when a source's content may have changed: a pinned Kaggle
version and a checksummed URL cannot change under the same `source` string, a local folder or
archive can, so its files' names, sizes and modification times are listed.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.request import urlopen

from tqdm import tqdm

from medcls.pipeline.errors import NO_SPACE, PipelineError, storage_error

ACCEPTED_SOURCES = (
    "'kaggle:<owner>/<dataset>' (optionally '/versions/<N>'), "
    "'https://.../<archive>#sha256=<64 hex digits>', "
    "or a local directory or .zip/.tar/.tar.gz/.tgz archive"
)
_KAGGLE_HANDLE = re.compile(r"[\w.-]+/[\w.-]+(/versions/\d+)?")
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)


class SourceError(PipelineError, ValueError):
    """A dataset source that cannot be used as given; the message says how to fix it."""


class SourceUnavailableError(PipelineError, RuntimeError):
    """The dataset source could not be reached (no network, server down, dataset gone)."""


class UnsafeArchiveError(SourceError):
    """An archive member would be written, or would link, outside the extraction directory."""


def fetch(source: str, dest: Path) -> None:
    """Materialise `source` as the directory `dest`, replacing any previous content atomically."""
    fetch_all({"": (source, f"datasets.{Path(dest).name}.source")}, dest)


def fetch_all(sources: Mapping[str, tuple[str, str]], dest: Path) -> None:
    """Materialise every source inside `dest` ({folder relative to `dest`, "" for `dest` itself:
    (source, the params key that names it, for messages)}), replacing any previous content
    atomically: all of them or none."""
    dest = Path(dest)
    partial = dest.parent / f".{dest.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        if "" not in sources:
            partial.mkdir()
        for folder, (source, param) in sources.items():
            _materialise(source, partial / folder, param=param)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)


def _materialise(source: str, target: Path, *, param: str) -> None:
    if source.startswith("kaggle:"):
        _from_local(_download_kaggle(source, param), target)
    elif source.startswith("http://"):
        raise _plain_http(source)
    elif source.startswith("https://"):
        with tempfile.TemporaryDirectory() as tmp:
            archive = Path(tmp) / "download"
            _download_https(source, archive, param)
            _extract(archive, target)
    else:
        _from_local(Path(source).expanduser(), target)


def fingerprint(source: str) -> dict:
    """What identifies the content of `source`: the string itself for Kaggle and https sources, and
    for a local folder or archive also a digest of every file's relative path, size and mtime.

    Stat data, not content hashes, keep this cheap enough to run before every `dvc repro`; a touched
    but unchanged file only costs a download whose identical result leaves later stages cached.
    """
    if source.startswith(("kaggle:", "https://")):
        return {"source": source}
    if source.startswith("http://"):
        raise _plain_http(source)
    path = Path(source).expanduser()
    if path.is_dir():
        files = local_files(path)
    elif path.is_file():
        files = [(path.name, path.stat())]
    else:
        raise _missing(path)
    listing = hashlib.sha256()
    total = 0
    for name, status in files:
        total += status.st_size
        listing.update(f"{name}\t{status.st_size}\t{status.st_mtime_ns}\n".encode())
    return {"source": source, "files": len(files), "bytes": total, "listing_sha256": listing.hexdigest()}


def local_files(root: Path) -> list[tuple[str, os.stat_result]]:
    """Every file under the folder `root` as its copy will hold it (symbolic links followed), by
    relative POSIX path, sorted, with its status. A link that loops (a -> b -> a, or a folder link
    to a folder containing it) or leads nowhere is a SourceError naming it: following it would
    never end, or copy nothing."""
    files = []
    folders = [(root, frozenset({_identity(root.stat())}))]
    while folders:
        folder, ancestors = folders.pop()
        for child in folder.iterdir():
            try:
                status = child.stat()
            except OSError as error:
                if not child.is_symlink():
                    raise
                problem = "loops" if error.errno == errno.ELOOP else "leads nowhere"
                raise _bad_link(root, child, problem) from None
            if stat.S_ISDIR(status.st_mode):
                if _identity(status) in ancestors:
                    raise _bad_link(root, child, "leads to a folder containing it")
                folders.append((child, ancestors | {_identity(status)}))
            else:
                files.append((child.relative_to(root).as_posix(), status))
    return sorted(files, key=lambda file: file[0])


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def _bad_link(root: Path, link: Path, problem: str) -> SourceError:
    return SourceError(
        f"{link}: a symbolic link in the source {root} that {problem} (to {os.readlink(link)!r}); "
        "remove or fix the link, then run dvc repro again"
    )


def unpinned_kaggle_warning(source: str) -> str | None:
    """A Kaggle handle without `/versions/N` means "latest at the first download": say so."""
    if source.startswith("kaggle:") and "/versions/" not in source:
        return (
            f"warning: {source!r} is not pinned: it is downloaded once (the latest version then) "
            "and not checked again; append '/versions/<N>' to fix the version in params.yaml"
        )
    return None


def _plain_http(source: str) -> SourceError:
    return SourceError(
        f"{source!r}: plain http is refused, as the download could be altered on the way; "
        f"use https://...#sha256=<64 hex digits>. Accepted sources: {ACCEPTED_SOURCES}"
    )


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"dataset source {str(path)!r} does not exist; accepted sources: {ACCEPTED_SOURCES}"
    )


def _unavailable(source: str, param: str, error: BaseException) -> SourceUnavailableError:
    return SourceUnavailableError(
        f"the dataset source {source!r} could not be reached ({error}). If this machine has no "
        f"internet, download it on a machine with internet and set `{param}` to that local "
        f"directory or archive, e.g. dvc exp run -S '{param}=/path/to/copy'"
    )


def _download_kaggle(source: str, param: str) -> Path:
    """Download through kagglehub's cache (public datasets need no credentials)."""
    handle = source.removeprefix("kaggle:")
    if not _KAGGLE_HANDLE.fullmatch(handle):
        raise SourceError(
            f"bad Kaggle source {source!r}; expected 'kaggle:<owner>/<dataset>[/versions/<N>]'"
        )
    import kagglehub  # imported lazily: slow, and only needed for this kind of source

    try:
        return Path(kagglehub.dataset_download(handle))
    except (
        Exception
    ) as error:  # kagglehub surfaces network trouble as many unrelated exception types
        raise _unavailable(source, param, error) from error


def _download_https(source: str, archive: Path, param: str) -> None:
    """Stream the URL to `archive` with a progress bar and verify the pinned sha256."""
    url, _, fragment = source.partition("#")
    expected = fragment.removeprefix("sha256=").lower()
    if not fragment.startswith("sha256=") or not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise SourceError(
            f"the URL {url!r} has no valid checksum; append '#sha256=<64 hex digits>' "
            "(from `sha256sum <file>`) so a changed or corrupted download is detected"
        )
    digest = hashlib.sha256()
    try:
        with urlopen(url, timeout=60) as response, archive.open("wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=size, unit="B", unit_scale=True, desc=f"download {param}"
            ) as progress:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    progress.update(len(chunk))
    except _NETWORK_ERRORS as error:
        raise _unavailable(url, param, error) from error
    if digest.hexdigest() != expected:
        raise SourceError(
            f"sha256 of {url} is {digest.hexdigest()}, expected {expected}: "
            "the file changed or is corrupt"
        )


def _from_local(path: Path, target: Path) -> None:
    """Copy a directory (following symlinks, so the copy stands alone, after checking that they
    end) or extract an archive."""
    if path.is_dir():
        local_files(path)
        shutil.copytree(path, target, copy_function=_copy_file)
    elif path.is_file():
        _extract(path, target)
    else:
        raise _missing(path)


def _copy_file(source: str, destination: str) -> None:
    """shutil.copy2, with a failed copy raised as itself: copytree would gather it, errno lost,
    into one shutil.Error listing every file, and a full disk fails every file after the first."""
    try:
        shutil.copy2(source, destination)
    except OSError as error:
        if error.errno in NO_SPACE or error.errno == errno.EROFS:
            error.filename = destination  # a failed copy names its source
        raise storage_error(error) or SourceError(
            f"cannot copy {source} from the source ({error.strerror}); check that file"
        ) from error


def _extract(archive: Path, target: Path) -> None:
    """Extract a zip or tar (any compression) after checking that every member stays inside `target`."""
    target.mkdir(parents=True)
    try:
        _check_and_extract(archive, target)
    except tarfile.FilterError as error:  # a member tarfile's "data" filter refuses (a device file)
        raise UnsafeArchiveError(f"{archive}: {error}; refusing to extract") from error
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as error:
        raise SourceError(
            f"{archive} is damaged ({error}); fetch a fresh copy of the archive"
        ) from error


def _check_and_extract(archive: Path, target: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                _check_member(info.filename, _zip_symlink_target(zipped, info), is_hardlink=False)
            zipped.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tarred:
            for member in tarred.getmembers():
                link = member.linkname if member.issym() or member.islnk() else None
                _check_member(member.name, link, is_hardlink=member.islnk())
            tarred.extractall(target, filter="data")  # also drops device files and setuid bits
    else:
        raise SourceError(
            f"{archive} is not a zip or tar archive; accepted sources: {ACCEPTED_SOURCES}"
        )


def _zip_symlink_target(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """Zip marks a symlink in the member's unix mode and stores its target as the content."""
    return zipped.read(info).decode() if stat.S_ISLNK(info.external_attr >> 16) else None


def _check_member(name: str, link: str | None, is_hardlink: bool) -> None:
    """Reject absolute paths, `..` components and links resolving outside the extraction root.

    Symlink targets are relative to the member's folder, hard-link targets to the archive root.
    """
    member = PurePosixPath(name)
    if member.is_absolute() or ".." in member.parts:
        raise UnsafeArchiveError(
            f"archive member {name!r} would be written outside the destination; refusing to extract"
        )
    if link is None:
        return
    resolved = posixpath.normpath(
        link if is_hardlink else posixpath.join(member.parent.as_posix(), link)
    )
    if posixpath.isabs(link) or resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(
            f"archive member {name!r} links outside the destination (to {link!r}); refusing to extract"
        )
