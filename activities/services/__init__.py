"""Named services the CLI and the Python API call for their side effects (SQL, the artifact store): each
takes the sessions or store the caller's composition root made, and does one short piece of work."""
