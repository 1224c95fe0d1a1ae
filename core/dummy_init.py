"""The project's one initialisation scheme for dummy (random) weights.

GEMM power depends on operand values, so dummy weights must be neither zeros nor uninitialised
memory, and every in-process runtime must use the same documented scheme. Ours:

* every floating-point parameter ~ normal(0, 0.02), drawn from a generator seeded with ``seed``
  on the parameter's device, in ``named_parameters()`` order;
* weights of normalisation layers (LayerNorm, GroupNorm, RMSNorm, ...) = 1;
* biases = 0.

Buffers (rotary frequencies, position ids) are computed by the model constructors and left as
they are. vLLM's own dummy loader (``--load-format dummy``) uses uniform(-1e-3, 1e-3) instead;
records say which scheme produced their numbers.
"""

from __future__ import annotations

import torch
from torch import nn

#: Standard deviation of the normal distribution for dummy weights.
DUMMY_STD = 0.02


def describe(seed: int) -> str:
    """The scheme as recorded in records and logs, e.g. ``normal(0, 0.02), ..., seed 0``."""
    return f"normal(0, {DUMMY_STD}), norm weights 1, biases 0, seed {seed}"


#: The scheme with a placeholder for the seed (README, docs).
DUMMY_INIT = "normal(0, 0.02), norm weights 1, biases 0, seed N"


def _is_norm(module: nn.Module) -> bool:
    return "norm" in type(module).__name__.lower()


def place_(module: nn.Module, device: str | torch.device) -> nn.Module:
    """Put every parameter and buffer of ``module`` (built under ``with torch.device(device)``) on
    ``device``. Some constructors ignore the device context: diffusers' ``AlphaBlender`` makes its
    ``mix_factor`` with the legacy ``torch.Tensor([...])`` constructor, which lands on the CPU and
    breaks the first forward pass on a GPU ("Expected all tensors to be on the same device").
    Raises ValueError naming a tensor still elsewhere. Returns ``module``."""
    target = torch.device(device)
    nn.Module.to(module, device=target)
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.device.type != target.type or (target.index is not None and t.device.index != target.index):
            raise ValueError(f"{name} is on {t.device}, not {target}")
    return module


@torch.no_grad()
def init_dummy_(module: nn.Module, seed: int) -> nn.Module:
    """Initialise every floating parameter of ``module`` in place with the dummy scheme.

    Deterministic for a given ``seed``, architecture and device. Returns ``module``.
    Parameters on the meta device are rejected (they hold no memory to initialise).
    """
    generators: dict[torch.device, torch.Generator] = {}
    owners: dict[str, nn.Module] = {}
    for mod_name, mod in module.named_modules():
        for p_name, _ in mod.named_parameters(recurse=False):
            owners[f"{mod_name}.{p_name}" if mod_name else p_name] = mod
    for name, param in module.named_parameters():
        if not param.is_floating_point():
            continue
        if param.device.type == "meta":
            raise ValueError(f"parameter {name} is on the meta device; materialise it first")
        leaf = name.rsplit(".", 1)[-1]
        owner = owners.get(name)
        if leaf == "bias" or leaf.endswith("_bias"):
            param.zero_()
        elif owner is not None and _is_norm(owner):
            param.fill_(1.0)
        else:
            gen = generators.get(param.device)
            if gen is None:
                gen = torch.Generator(device=param.device)
                gen.manual_seed(seed)
                generators[param.device] = gen
            param.normal_(0.0, DUMMY_STD, generator=gen)
    return module
