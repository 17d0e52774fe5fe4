"""Reading and checking Debian files: .dsc uploads, source archives, .debs, tool output."""
