"""Vector quantisation of hidden states onto a frozen model's token embeddings (pure functions).

The actor's hidden states h at the CoT positions are L2-normalised and compared by cosine
similarity with every token embedding; each is replaced by a chosen embedding e (nearest,
sampled from softmax(sim / temperature), or Gumbel-softmax), passed straight through:

    inputs = h' + (e - h').detach()          value e, gradient d inputs / d h' = I

where h' = h * ||e|| (h rescaled to the chosen embedding's norm, scale detached) so that the
critic sees the exact token embedding while gradients still reach the actor. The codebook
loss pulls h towards the chosen code on the unit sphere: MSE(h, e / ||e||) with e detached.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def cosine_similarity_logits(hidden: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit hidden (B, L, d), cosine similarities (B, L, V)) of hidden states vs embedding rows."""
    unit = F.normalize(hidden.float(), dim=-1)
    similarity = unit @ F.normalize(table.detach().float(), dim=-1).T
    return unit, similarity


def select_codes(
    similarity: torch.Tensor,
    temperature: float = 1.0,
    use_argmax: bool = True,
    gumbel: bool = False,
    gumbel_tau: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pick a code per position: ``(indices (B, L), soft weights (B, L, V) or None)``.

    * ``gumbel``: Gumbel-softmax of sim / temperature at ``gumbel_tau``; hard one-hot
      (weights None) when ``use_argmax``, else the soft weights are returned too.
    * otherwise ``use_argmax``: the nearest embedding; else a sample from softmax(sim / temperature).
    No gradient flows through the choice (the straight-through estimator carries it).
    """
    with torch.no_grad():
        logits = similarity / temperature
        if gumbel:
            weights = F.gumbel_softmax(logits, tau=gumbel_tau, hard=use_argmax, dim=-1)
            return weights.argmax(dim=-1), (None if use_argmax else weights)
        if use_argmax:
            return logits.argmax(dim=-1), None
        probs = torch.softmax(logits, dim=-1)
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1)
        return flat.view(probs.shape[:-1]), None


def straight_through(h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """h + (e - h).detach(): forward value e, backward identity to h."""
    return h + (e - h).detach()


def codebook_loss(unit_hidden: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """MSE between the unit hidden states and the unit-normalised chosen codes (codes detached)."""
    return F.mse_loss(unit_hidden, F.normalize(codes.detach().float(), dim=-1))


def quantize(
    hidden: torch.Tensor,
    table: torch.Tensor,
    embed: Callable[[torch.Tensor], torch.Tensor],
    temperature: float = 1.0,
    use_argmax: bool = True,
    gumbel: bool = False,
    gumbel_tau: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Quantise ``hidden`` (B, L, d) onto the rows of ``table`` (V, d).

    ``embed(indices)`` returns the vectors the critic would see for those token ids (its
    input-embedding module, which may scale the table). Soft Gumbel weights mix table rows,
    rescaled like ``embed`` scales the argmax token. Returns ``inputs`` (straight-through,
    critic-ready), ``indices``, ``codebook_loss`` and the unit hidden states ``unit``.
    """
    unit, similarity = cosine_similarity_logits(hidden, table)
    indices, weights = select_codes(similarity, temperature, use_argmax, gumbel, gumbel_tau)
    with torch.no_grad():
        codes = embed(indices).float()
        if weights is not None:
            mixed = weights @ table.detach().float()
            scale = codes.norm(dim=-1, keepdim=True) / table.detach().float()[indices].norm(dim=-1, keepdim=True)
            codes = mixed * scale.nan_to_num(1.0)
    scaled = unit * codes.norm(dim=-1, keepdim=True)
    return {
        "inputs": straight_through(scaled, codes),
        "indices": indices,
        "codebook_loss": codebook_loss(unit, codes),
        "unit": unit,
    }
