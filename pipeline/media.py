"""Clip media in one tar per video (work/media/<xx>/<video_id>.tar): every clip's mp4, wav and frames as
members named <clip_id>.<ext>. Stages and the sink read members by name; nothing else in work/ is per clip."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from mvid.pipeline.store import temp


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    """Write (name, bytes) members into a tar at path atomically (temporary name, fsync, rename), with fixed
    metadata: the same members always make the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp(path)
    try:
        with open(tmp, "wb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for name, data in members:
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = len(data), 0o644, 0
                    tar.addfile(info, io.BytesIO(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def files(paths: dict[str, Path]) -> Iterator[tuple[str, bytes]]:
    """Members from files (member name -> file), in name order."""
    for name in sorted(paths):
        yield name, Path(paths[name]).read_bytes()


class Media:
    """Read members of media tars, each tar opened once."""

    def __init__(self, work: Path):
        self.work = Path(work)
        self.open: dict[str, tarfile.TarFile] = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for t in self.open.values():
            t.close()

    def read(self, tar: str, member: str) -> bytes:
        if tar not in self.open:
            self.open[tar] = tarfile.open(self.work / tar)  # noqa: SIM115 - kept open, closed by __exit__
        f = self.open[tar].extractfile(member)
        if f is None:
            raise KeyError(f"{tar}: {member} is not a file")
        return f.read()

    def unpack(self, tar: str, member: str, dest: Path) -> str:
        """The member as a file under dest (for models that read paths); its path."""
        p = dest / member
        if not p.exists():
            p.write_bytes(self.read(tar, member))
        return str(p)
