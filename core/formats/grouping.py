"""Views of a weight matrix as groups of G consecutive input features.

A row of K weights is split into ceil(K / G) groups; the last group may be
partial. For statistics it is padded by repeating the row's last weight, which
changes neither its absolute maximum nor its minimum or maximum.
"""

import numpy as np


def n_groups(k: int, group: int) -> int:
    """Number of groups of `group` input features in a row of `k`."""
    return -(-k // group)


def to_groups(w: np.ndarray, group: int) -> np.ndarray:
    """(N, K) -> (N, ceil(K/G), G), padding the last group with the row's last value."""
    n, k = w.shape
    pad = n_groups(k, group) * group - k
    if pad:
        w = np.pad(w, ((0, 0), (0, pad)), mode="edge")
    return w.reshape(n, -1, group)


def per_element(group_values: np.ndarray, k: int, group: int) -> np.ndarray:
    """Broadcast per-group values (N, ceil(K/G)) to per-element (N, K)."""
    return np.repeat(group_values, group, axis=1)[:, :k]
