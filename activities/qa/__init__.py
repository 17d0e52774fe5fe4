"""More checks of an upload: debdiff against the suite's version, blhc on build logs, piuparts."""
