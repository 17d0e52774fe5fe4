"""Throwaway OpenPGP keys that sign the Release files of local archives, so imports verify them for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

ARCHIVE_UID = "debflow local archive <archive@debflow.invalid>"


class ThrowawayKey:
    """A passphrase-less ed25519 signing key in a temporary GNUPGHOME of its own (never ~/.gnupg),
    deleted with its gpg-agent on close. `faked_time` (gpg's --faked-system-time, e.g. 20200101T000000)
    makes and uses it in the past: how the tests get an expired key."""

    def __init__(self, uid: str = ARCHIVE_UID, *, expires: str = "never", faked_time: str | None = None):
        # Under /tmp, whatever TMPDIR says: gpg-agent's socket path must stay short.
        self.home = Path(tempfile.mkdtemp(prefix="debflow-gpg-", dir="/tmp"))
        self.faked_time = faked_time
        try:
            self.gpg("--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", expires)
            self.fingerprint = next(
                line.split(":")[9]
                for line in self.gpg("--with-colons", "--list-keys").splitlines()
                if line.startswith("fpr:")
            )
        except BaseException:
            self.close()
            raise

    def gpg(self, *args: str) -> str:
        """Run gpg on this key's home; return its stdout, raise with its stderr on failure."""
        faked = ["--faked-system-time", self.faked_time] if self.faked_time else []
        command = ["gpg", "--batch", "--quiet", "--no-tty", "--yes", *faked, *args]
        completed = subprocess.run(
            command, env={**os.environ, "GNUPGHOME": str(self.home)}, capture_output=True, text=True
        )
        if completed.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed (exit {completed.returncode}): {completed.stderr}"
            )
        return completed.stdout

    def sign(self, release: Path) -> Path:
        """Write InRelease (clearsigned) and Release.gpg (detached) beside `release`; return InRelease."""
        in_release = release.with_name("InRelease")
        self.gpg("--local-user", self.fingerprint, "--clearsign", "--output", str(in_release), str(release))
        detached = release.with_name(release.name + ".gpg")
        self.gpg(
            "--local-user",
            self.fingerprint,
            "--armor",
            "--detach-sign",
            "--output",
            str(detached),
            str(release),
        )
        return in_release

    def export(self, keyring: Path) -> Path:
        """Write the public key as a binary keyring file, the form gpgv and apt's signed-by take."""
        self.gpg("--export", "--output", str(keyring), self.fingerprint)
        return keyring

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True, check=False
        )
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> ThrowawayKey:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def sign_release(release: Path, keyring: Path) -> Path:
    """Sign `release` with a new throwaway key (InRelease and Release.gpg beside it), export the public key
    to `keyring` and forget the private one; return the InRelease."""
    with ThrowawayKey() as key:
        in_release = key.sign(release)
        key.export(keyring)
    return in_release
