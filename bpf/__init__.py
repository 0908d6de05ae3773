"""Kernel side of netmetrics: the eBPF program and the Python that loads, reads and detaches it."""
