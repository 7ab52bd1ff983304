"""Worker processes: one module per service plus the shared worker loop (``base``)."""
