"""Data code: the datasets' files and checksums, IDX I/O, the download and the split."""
