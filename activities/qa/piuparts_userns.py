"""piuparts, made to run as the root of a user namespace (docs/qa-checks.md); runs with /usr/bin/python3.

Inside a user namespace no device node can be made, and piuparts makes two when it sets up /dev of its
chroot (/dev/ptmx, then /dev/null). Before piuparts' own Chroot.mount_proc runs, this binds the host's
harmless character devices onto empty files in the chroot's /dev and makes /dev/ptmx a link to the
devpts instance piuparts mounts; piuparts then finds both and makes neither. Everything else is
piuparts as shipped. Standard library only: it runs outside debflow's virtual environment.
"""

import importlib.machinery
import importlib.util
import os
import sys

PIUPARTS = "/usr/sbin/piuparts"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def main() -> None:
    loader = importlib.machinery.SourceFileLoader("piuparts", PIUPARTS)
    spec = importlib.util.spec_from_loader("piuparts", loader)
    assert spec is not None
    piuparts = importlib.util.module_from_spec(spec)
    loader.exec_module(piuparts)
    chroot = getattr(piuparts, "Chroot", None)
    if chroot is None or not hasattr(chroot, "mount_proc") or not hasattr(chroot, "mount"):
        sys.exit(f"{PIUPARTS} has no Chroot.mount_proc and Chroot.mount: this piuparts is not supported")
    original = chroot.mount_proc

    def mount_proc(self):  # type: ignore[no-untyped-def]
        for name in DEVICES:
            path = self.relative(f"dev/{name}")
            if not os.path.lexists(path):
                open(path, "w").close()
            self.mount(f"/dev/{name}", f"/dev/{name}", opts="bind", no_mkdir=True)
        ptmx = self.relative("dev/ptmx")
        if not os.path.lexists(ptmx):
            os.symlink("pts/ptmx", ptmx)
        original(self)

    chroot.mount_proc = mount_proc
    sys.argv[0] = "piuparts"
    piuparts.main()


if __name__ == "__main__":
    main()
