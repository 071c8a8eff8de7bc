"""Training: truncated BPTT (``bptt``)."""
