"""Errors meant for the user: the CLI prints their message and exits non-zero, no traceback."""
from __future__ import annotations

import errno
import re
from contextlib import contextmanager


class FersnetError(Exception):
    """Base of every error whose message is written for the user (names the file or key)."""


class DataError(FersnetError):
    """Bad input data: a missing root, a wrong layout, a corrupt file, a bad label."""


class TrainingError(FersnetError):
    """A training job that cannot go on (e.g. a non-finite loss)."""


class DeviceError(FersnetError):
    """A device was asked for that this machine does not have (names `train.device` or `--device`)."""


class CheckpointError(FersnetError):
    """A checkpoint that cannot be used: corrupt, truncated, or not one fersnet wrote (names the file)."""


class DiskFull(FersnetError):
    """No space left (ENOSPC, or the disk quota) while writing: one line naming the folder."""

    def __init__(self, folder, reason: str = "no space left on device"):
        self.folder, self.reason = folder, reason
        where = f"{folder}: the disk is full" if folder is not None else "the disk is full"
        super().__init__(f"{where} ({reason}); nothing half-written was kept; free some space and run "
                         "the command again")


# errno values that mean "no room to write": the device is full, or the user's quota is.
FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


# numpy's tofile reports a short write without an errno: "5184 requested and 3968 written"
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def disk_full(e: BaseException) -> bool:
    """True for an OSError that says the disk (or the quota) is full, or a short write (numpy's
    `array.tofile` on a full disk raises one without an errno)."""
    return isinstance(e, OSError) and (e.errno in FULL or (e.errno is None and bool(_SHORT_WRITE.search(str(e)))))


@contextmanager
def writing(folder):
    """Turn a full disk while writing under `folder` into a DiskFull naming it: one line, no traceback.

    Wrap the whole write, temporary file or folder and rename included; fersnet's writers remove
    their temporaries on the way out (and a killed run's are named by fersnet.ownership.temp_name,
    which the next run removes), so nothing half-written is left for a later run to take. Nested,
    the outermost folder is the one named (the result folder rather than its staging copy).
    """
    try:
        yield
    except DiskFull as e:
        raise DiskFull(folder, e.reason) from None
    except OSError as e:
        if not disk_full(e):
            raise
        raise DiskFull(folder, e.strerror or "no space left on device") from None
