"""A peft LoRA on the last linear layer of a backend's IoU head, and gradients through it.

:meth:`Backend.decode` runs under ``torch.inference_mode``, so no gradient can flow
through it. The IoU head is the last step of the decoder, and nothing the head computes
feeds back into the masks. So training decodes once without gradients while a hook
records the head's input, then runs the head module itself again on a copy of that input
with gradients on: the same module, the same input and the same precision give the same
IoU predictions the decoder returned (checked bit for bit for every recorded decode), and
the loss reaches the LoRA weights only. The head's input does not depend on the LoRA, so
it is recorded once and every epoch reuses it. At refine time the decoder runs that same head, LoRA
included, so the adapted model predicts exactly what training optimised.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import torch

from samrefiner.extras import install_hint
from samrefiner.models.base import Backend, Decoded

#: peft's name of the one adapter samrefiner puts on a head.
ADAPTER_NAME = "samrefiner_iou"


class AdaptionError(ValueError):
    """A backend, adapter file or training input that adaption cannot use."""


def extra(module: str) -> ModuleType:
    """Import a module of the ``adapt`` extra (peft, safetensors), or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise AdaptionError(
            f"IoU adaption needs {module.split('.')[0]!r}, which is not installed: "
            + install_hint("adapt")
        ) from exc


def require_head(backend: Backend) -> torch.nn.Module:
    """``backend.iou_head``, or an error naming the backend when it has none."""
    head = backend.iou_head
    if head is None:
        raise AdaptionError(
            f"model {backend.name!r} has no trainable IoU head (Backend.iou_head is None): "
            "IoU adaption is not available for it"
        )
    return head


def _linear_layers(head: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The head's linear layers by name; a LoRA-wrapped layer counts as one (its inner
    modules are left out)."""
    lora_type = extra("peft.tuners.lora").LoraLayer

    found: dict[str, torch.nn.Module] = {}
    for name, module in head.named_modules():
        if any(name.startswith(w + ".") for w, m in found.items() if isinstance(m, lora_type)):
            continue
        if isinstance(module, (lora_type, torch.nn.Linear)):
            found[name] = module
    return found


def last_linear_name(head: torch.nn.Module) -> str:
    """Name (inside ``head``) of its output layer: the linear layer that runs last.

    The order is observed by running the head once on a zero input (tried with the
    input width of each linear layer until one fits), so heads whose modules are
    registered in another order than they run are handled.
    """
    layers = _linear_layers(head)
    if not layers:
        raise AdaptionError(f"the IoU head ({type(head).__name__}) has no nn.Linear layer")
    order: list[str] = []
    hooks = [
        m.register_forward_hook(lambda *_args, n=n: order.append(n)) for n, m in layers.items()
    ]
    reference = next(head.parameters())
    try:
        for width in dict.fromkeys(int(m.in_features) for m in layers.values()):
            order.clear()
            try:
                with torch.no_grad():
                    head(torch.zeros(1, width, device=reference.device, dtype=reference.dtype))
            except (RuntimeError, ValueError, TypeError):
                continue
            if order:
                return order[-1]
    finally:
        for hook in hooks:
            hook.remove()
    raise AdaptionError(
        f"the IoU head ({type(head).__name__}) does not run on a 2-D input of any of its "
        "linear layers' widths: cannot tell its output layer"
    )


def lora_layer(head: torch.nn.Module) -> torch.nn.Module | None:
    """The head's LoRA-wrapped output layer, or None when no adapter is attached."""
    lora_type = extra("peft.tuners.lora").LoraLayer

    layer = head.get_submodule(last_linear_name(head))
    if isinstance(layer, lora_type) and ADAPTER_NAME in layer.lora_A:
        return layer
    return None


def attach_lora(backend: Backend, rank: int, alpha: float, seed: int) -> torch.nn.Module:
    """Put a fresh LoRA (``rank``, ``alpha``, no dropout) on the head's last linear layer.

    ``lora_A`` is drawn from a generator seeded with ``seed``; ``lora_B`` starts at zero,
    so the model's predictions are unchanged until it is trained. Only the LoRA weights
    require gradients afterwards.

    Returns:
        The wrapped layer.
    """
    peft = extra("peft")
    head = require_head(backend)
    if lora_layer(head) is not None:
        raise AdaptionError(f"model {backend.name!r} already carries an IoU adapter")
    name = last_linear_name(head)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=[name])
    device = next(head.parameters()).device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        peft.inject_adapter_in_model(config, head, adapter_name=ADAPTER_NAME)
    layer = lora_layer(head)
    if layer is None:  # peft matched nothing: should not happen with an exact name
        raise AdaptionError(f"peft did not wrap the IoU head's layer {name!r}")
    for param in head.parameters():
        param.requires_grad_(False)
    for param in lora_parameters(layer):
        param.requires_grad_(True)
    return layer


def lora_parameters(layer: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trainable tensors of the adapter: ``[lora_A.weight, lora_B.weight]``."""
    return [layer.lora_A[ADAPTER_NAME].weight, layer.lora_B[ADAPTER_NAME].weight]


def lora_state(layer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's weights on the CPU, keyed ``lora_A`` / ``lora_B``."""
    a, b = lora_parameters(layer)
    return {"lora_A": a.detach().cpu().clone(), "lora_B": b.detach().cpu().clone()}


def load_lora_state(layer: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy ``state`` (see :func:`lora_state`) into the adapter; shapes must match."""
    for param, key in zip(lora_parameters(layer), ("lora_A", "lora_B"), strict=True):
        value = state[key]
        if tuple(value.shape) != tuple(param.shape):
            raise AdaptionError(
                f"adapter tensor {key} is {tuple(value.shape)}, the model's LoRA needs "
                f"{tuple(param.shape)}"
            )
        with torch.no_grad():
            param.copy_(value.to(param.device, param.dtype))


@contextlib.contextmanager
def adapter_disabled(backend: Backend) -> Iterator[None]:
    """Run the base model: the LoRA is bypassed inside the block (no-op without one)."""
    head = backend.iou_head
    layer = None if head is None else lora_layer(head)
    if layer is None:
        yield
        return
    flags = [p.requires_grad for p in lora_parameters(layer)]
    layer.enable_adapters(False)
    try:
        yield
    finally:
        layer.enable_adapters(True)
        for param, flag in zip(lora_parameters(layer), flags, strict=True):
            param.requires_grad_(flag)  # peft sets its own flags when re-enabling


@dataclass
class HeadCall:
    """One decode with the IoU head's input recorded.

    Attributes:
        decoded: the backend's output.
        head_input: ``B x D`` what the IoU head received, one row per prompt (a
            detached copy).
        columns: ``B x C`` indices: prompt ``b``'s candidate ``c`` has the predicted IoU of
            column ``columns[b][c]`` of the head's output (the same columns for every
            prompt in SAM; transformers' SAM-HQ sorts the candidates by predicted IoU).
    """

    decoded: Decoded
    head_input: torch.Tensor
    columns: list[list[int]]


def decode_recording(backend: Backend, decode: Callable[[], Decoded], dtype: str) -> HeadCall:
    """Run ``decode()`` (a call of ``backend.decode`` in ``dtype``); record the head's input.

    The candidates' predicted IoUs must be values of the head's output, unchanged, and
    :func:`head_iou` on the recorded input must give them back bit for bit (checked):
    that is what lets training recompute them with gradients.
    """
    head = require_head(backend)
    inputs: list[torch.Tensor] = []
    outputs: list[torch.Tensor] = []

    # Heads may see a batch with extra leading axes (transformers: B x 1 x ...); they are
    # row-wise MLPs, so inputs and outputs are kept as rows, one per prompt.
    def pre_hook(_module: torch.nn.Module, args: tuple) -> None:
        inputs.append(args[0].detach().reshape(-1, args[0].shape[-1]).clone())

    def hook(_module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> None:
        outputs.append(output.detach().float().reshape(-1, output.shape[-1]).clone())

    handles = [head.register_forward_pre_hook(pre_hook), head.register_forward_hook(hook)]
    try:
        decoded = decode()
    finally:
        for handle in handles:
            handle.remove()
    if len(inputs) != 1:
        raise AdaptionError(
            f"model {backend.name!r}: its IoU head ran {len(inputs)} times in one decode; "
            "adaption needs exactly one call"
        )
    columns = match_columns(outputs[0], decoded.iou_predictions.to(outputs[0].device))
    if columns is None:
        raise AdaptionError(
            f"model {backend.name!r}: the predicted IoUs are not columns of its IoU head's "
            "output, so the head cannot be trained from them"
        )
    again = head_iou(backend, inputs[0], columns, dtype).detach()
    if not torch.equal(again, decoded.iou_predictions.to(again.device)):
        raise AdaptionError(
            f"model {backend.name!r}: running its IoU head again does not reproduce the "
            "decoder's predicted IoUs"
        )
    return HeadCall(decoded, inputs[0], columns)


def match_columns(head_output: torch.Tensor, iou: torch.Tensor) -> list[list[int]] | None:
    """Per row ``b``, the columns ``k`` with ``head_output[b, k] == iou[b, c]`` exactly.

    Each candidate gets its own column. Where several columns hold the same value the
    latest unused one is taken: SAM-family heads put the single mask's score first and
    the multimask candidates after it.

    Returns:
        ``B x C`` column indices, or None when some candidate matches no column.
    """
    if head_output.ndim != 2 or iou.ndim != 2 or head_output.shape[0] != iou.shape[0]:
        return None
    columns = []
    for b in range(iou.shape[0]):
        row: list[int] = []
        for c in range(iou.shape[1]):
            same = [
                k
                for k in range(head_output.shape[1])
                if k not in row and bool(head_output[b, k] == iou[b, c])
            ]
            if not same:
                return None
            row.append(same[-1])
        columns.append(row)
    return columns


def head_iou(
    backend: Backend, head_input: torch.Tensor, columns: list[list[int]], dtype: str
) -> torch.Tensor:
    """``B x C`` predicted IoUs for a recorded head input, computed with autograd on.

    Args:
        head_input: ``B x D`` rows of :attr:`HeadCall.head_input`.
        columns: ``B x C`` rows of :attr:`HeadCall.columns`.
        dtype: the precision the decoder ran in.
    """
    head = require_head(backend)
    with torch.inference_mode(False), torch.enable_grad(), backend.precision(dtype):
        out = head(head_input.clone()).float()
        index = torch.as_tensor(columns, dtype=torch.int64, device=out.device)
        return out.reshape(-1, out.shape[-1]).gather(1, index)
