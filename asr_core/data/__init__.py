"""Data: corpus sources, download, the source index and the prepare step."""
