"""Every file bayesgmm writes: paths checked before any long work, contents replaced atomically.

Two rules, one module:

- **Checked first.** :func:`check_targets` runs before any fitting starts: each output must be
  a file name (not a directory), its folder must exist or be creatable (not under a file) and
  writable, the outputs of one set must be distinct, and no output may be one of the inputs
  (the same path, a symbolic link to it or a hard link of it).
- **Replaced whole.** :func:`staged` writes a set of files to temporary files in their own
  folders; only when every one is complete are they moved into place with :func:`os.replace`
  (atomic on POSIX and Windows). An error or an interrupt before that leaves the old files as
  they were and removes the temporary ones. A replaced file is a new file: hard links of the
  old one keep the old contents.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

__all__ = ["OutputPathError", "check_targets", "staged"]

PathLike = str | os.PathLike


class OutputPathError(ValueError):
    """An output path that cannot be written, or that would replace an input.

    Examples
    --------
    >>> from bayesgmm import OutputPathError, report
    >>> try:  # doctest: +SKIP
    ...     report(X, out="data.csv", inputs=["data.csv"])
    ... except OutputPathError as err:
    ...     print(err)
    """


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file, following symbolic links; None if absent."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _existing_ancestor(path: Path) -> Path:
    """The nearest ancestor of ``path`` that exists (``path``'s folder if it exists)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def _probe_writable(folder: Path, target: Path) -> None:
    """Create and remove a file in ``folder``: the only check that holds for every user
    (root ignores permission bits but not a read-only file system)."""
    probe = folder / f".{target.name}.{uuid.uuid4().hex[:8]}.probe"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as err:
        raise OutputPathError(
            f"cannot write {target}: {folder} is not writable ({err.strerror}); choose "
            "another output path"
        ) from None


def _check_one(path: Path, role: str) -> None:
    if path.is_dir():
        raise OutputPathError(
            f"the {role} {path} is a directory: give a file name, e.g. {path / 'report.html'}"
        )
    if path.exists() and not path.is_file():
        raise OutputPathError(f"the {role} {path} exists and is not a regular file")
    ancestor = _existing_ancestor(path)
    if not ancestor.is_dir():
        raise OutputPathError(f"cannot write the {role} {path}: {ancestor} is a file, not a folder")
    _probe_writable(ancestor, path)


def _check_not_inputs(targets: Sequence[tuple[Path, str]], inputs: Iterable[PathLike]) -> None:
    protected = {}
    for item in inputs:
        identity = _identity(Path(item))
        if identity is not None:
            protected[identity] = Path(item)
    for path, role in targets:
        identity = _identity(path)
        if identity in protected:
            raise OutputPathError(
                f"the {role} {path} is the input file {protected[identity]} (or a link to "
                "it): bayesgmm never overwrites its input; choose another output path"
            )


def _check_distinct(targets: Sequence[tuple[Path, str]]) -> None:
    seen: dict[Path, str] = {}
    for path, role in targets:
        key = Path(os.path.abspath(path))
        if key in seen:
            raise OutputPathError(
                f"the {role} and the {seen[key]} would both be {path}: give the outputs "
                "distinct names"
            )
        seen[key] = role


def check_targets(
    targets: Sequence[tuple[PathLike, str]], *, inputs: Iterable[PathLike] = ()
) -> None:
    """Check a set of output files before any work: raise :class:`OutputPathError` if any
    could not be written, or would replace another output of the set or an input.

    Parameters
    ----------
    targets : sequence of (path, role)
        The files to write and what each is ("HTML report", ...), for the messages.
    inputs : iterable of path
        Files the outputs must never replace (the data's source).

    Examples
    --------
    >>> check_targets([("out/r.html", "HTML report"), ("out/r.md", "Markdown twin")])
    >>> try:
    ...     check_targets([("r.md", "HTML report"), ("r.md", "Markdown twin")])
    ... except OutputPathError as err:
    ...     print(err)
    the Markdown twin and the HTML report would both be r.md: give the outputs distinct names
    """
    paths = [(Path(p), role) for p, role in targets]
    _check_distinct(paths)
    for path, role in paths:
        _check_one(path, role)
    _check_not_inputs(paths, inputs)


class Stage:
    """Temporary files beside their targets, moved into place together by :meth:`commit`."""

    def __init__(self, inputs: Iterable[PathLike] = ()) -> None:
        self._inputs = list(inputs)
        self._pending: list[tuple[Path, Path]] = []

    def path_for(self, target: PathLike) -> Path:
        """A fresh temporary path in ``target``'s folder (created if needed) to write to."""
        target = Path(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OutputPathError(f"cannot create the folder of {target}: {err.strerror}") from None
        temporary = target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}.tmp"
        self._pending.append((temporary, target))
        return temporary

    def write_bytes(self, target: PathLike, data: bytes) -> None:
        """Write ``data`` to a temporary file for ``target`` (mode as the umask allows)."""
        temporary = self.path_for(target)
        try:
            fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        except OSError as err:
            raise OutputPathError(f"cannot write {target}: {err.strerror}") from None

    def commit(self) -> None:
        """Move every temporary file onto its target (inputs are checked once more)."""
        _check_not_inputs([(target, "output") for _, target in self._pending], self._inputs)
        for temporary, target in self._pending:
            try:
                os.replace(temporary, target)
            except OSError as err:
                if err.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise OutputPathError(f"cannot replace {target}: it is a directory") from None
                raise OutputPathError(f"cannot write {target}: {err.strerror}") from None
        self._pending.clear()

    def discard(self) -> None:
        """Remove the temporary files not yet moved into place."""
        for temporary, _ in self._pending:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        self._pending.clear()


@contextlib.contextmanager
def staged(*, inputs: Iterable[PathLike] = ()) -> Iterator[Stage]:
    """Write a set of files all or nothing.

    Write every file through the yielded :class:`Stage`; when the block ends normally they are
    moved into place, and when it raises (an error, ``KeyboardInterrupt``) the temporary files
    are removed and the targets are left as they were.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with staged() as stage:
    ...     stage.write_bytes(folder / "a.txt", b"one")
    ...     stage.write_bytes(folder / "b.txt", b"two")
    >>> sorted(p.name for p in folder.iterdir())
    ['a.txt', 'b.txt']
    """
    stage = Stage(inputs)
    try:
        yield stage
        stage.commit()
    finally:
        stage.discard()
