"""The kernel: time, money, errors, the store and its repositories, logs, metrics."""
