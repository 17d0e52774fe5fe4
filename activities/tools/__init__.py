"""Running the Debian tools: processes, executors (host, unshare), test environments."""
