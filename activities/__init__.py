"""Every side effect: Debian tools in subprocesses, the artifact store, SQL."""
