"""What a build produced, as artifacts: the .changes with the files it lists, and each .deb's control data."""

from __future__ import annotations

import subprocess
from pathlib import Path

from debian.deb822 import Changes, Deb822

from activities.storage.store import NewArtifact
from models.artifacts import BinaryPackageData, UploadData
from models.vocabulary import ArtifactCategory


def changes_artifact(changes: Path, idempotency_key: str) -> NewArtifact:
    """A debian:upload: the .changes and the files it lists except the .debs (artifacts of their own)."""
    with open(changes) as f:
        fields = Changes(f)
    listed = {entry["name"] for entry in fields.get("Files", [])}
    files = {changes.name: changes}
    files |= {name: changes.parent / name for name in listed if not name.endswith(".deb")}
    return NewArtifact(
        ArtifactCategory.UPLOAD,
        UploadData(
            source=fields["Source"],
            version=fields["Version"],
            architecture=fields.get("Architecture", "").split(),
            changes_filename=changes.name,
            changes_fields={k: v for k, v in fields.items() if isinstance(v, str) and "\n" not in v},
        ),
        files,
        idempotency_key,
    )


def binary_data(deb: Path) -> BinaryPackageData:
    """The data of a debian:binary-package, from the .deb's control fields."""
    fields = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, check=True).stdout
    control = Deb822(fields)
    source_field = control.get("Source", control["Package"])
    source, _, source_version = source_field.partition(" ")
    return BinaryPackageData(
        package=control["Package"],
        version=control["Version"],
        architecture=control["Architecture"],
        source=source,
        source_version=source_version.strip("()") or control["Version"],
        depends=control.get("Depends", ""),
        pre_depends=control.get("Pre-Depends", ""),
        provides=control.get("Provides", ""),
        filename=deb.name,
    )
