"""What the experiment modules share: the size knob's check, torch's settings for a recording,
and NumPy parameter trees turned into torch leaves for autograd training.

The module's name starts with an underscore, so the registry (``rnnkit.experiments``) does not
take it for an experiment.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

__all__ = ["config_for", "torch_settings", "torch_leaves"]


def config_for(size: str, configs: dict[str, dict]) -> dict:
    """``configs[size]``, or a ValueError naming ``size`` and the sizes there are."""
    if size not in configs:
        raise ValueError(f"size: expected one of {sorted(configs)}, got {size!r}")
    return configs[size]


@contextlib.contextmanager
def torch_settings(threads: int = 1, dtype: Any = None) -> Iterator[None]:
    """Run the body with ``threads`` torch threads (and ``dtype`` as torch's default dtype, if
    given), then restore what was set before, also when the body raises.

    One thread makes a recording deterministic (a reduction split over threads adds in another
    order) and fair on a shared 2-core machine; restoring it keeps a notebook that calls
    ``run("small")`` as it was.
    """
    import torch  # noqa: PLC0415

    old_threads, old_dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_num_threads(threads)
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.set_default_dtype(old_dtype)


def torch_leaves(tree: Any, dtype: Any = None) -> tuple[Any, list]:
    """A nested dict/list of NumPy arrays as the same nesting of torch tensors that require
    gradients (``dtype``, default float32), and the flat list of those tensors for the optimiser.
    """
    import torch  # noqa: PLC0415

    dtype = torch.float32 if dtype is None else dtype
    leaves: list = []

    def convert(node):
        if isinstance(node, dict):
            return {k: convert(v) for k, v in node.items()}
        if isinstance(node, list):
            return [convert(v) for v in node]
        t = torch.tensor(node, dtype=dtype, requires_grad=True)
        leaves.append(t)
        return t

    return convert(tree), leaves
