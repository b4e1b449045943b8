"""MarkovianVQTrainer: the vector-quantised variant of Markovian training (`use_vq=True`).

No CoT is sampled. One update:

    1. rollout    x followed by vq_reason_length placeholder positions; the critic's fresh
                  context is [prefix (e.g. bos); codes; " Answer:"; " " + answer]: no question token
    2. codes      h = the actor's hidden states at the placeholders (layer vq_hidden_layer),
                  L2-normalised and mapped to the nearest critic token embedding e by cosine
                  similarity (argmax, sampled, or Gumbel-softmax), passed straight through:
                  h' + (e - h').detach()
    3. loss       -mean_y log P_critic(y | codes) + vq_codebook_weight * MSE(h, e.detach())

The critic's parameters have requires_grad=False but it is NOT run under no_grad, so the
answer loss reaches the actor through it. Evaluation writes argmax codes as the CoT and
lets the critic answer from the same fresh context.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ...objectives.advantages import repeat_rows
from ...objectives.markovian import COT
from ...objectives.vq import quantize
from ...scoring.logprobs import masked_mean, token_logprobs
from ...scoring.packing import pack_rows
from ...scoring.window import accepts_logits_to_keep, forward_window, innermost_model
from ..core.docstrings import documented
from .trainer import MarkovianTrainer


@documented
class MarkovianVQTrainer(MarkovianTrainer):
    """Markovian training through quantised hidden states; needs `MarkovianConfig(use_vq=True)`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fresh_prefix_ids = self.processing_class("", add_special_tokens=True).input_ids  # e.g. [bos]
        self._texts: tuple[list[str], list[str]] = ([], [])
        self._check_shapes()

    def _check_variant(self) -> None:
        if not self.args.use_vq:
            raise ValueError("MarkovianVQTrainer needs use_vq=True; use MarkovianTrainer otherwise")

    @property
    def updates_per_rollout(self) -> int:
        return 1

    # 1. rollout: [x; placeholders] for the actor, [" Answer:"; " " + answer] for the critic's fresh context
    def make_rollout(self, prompts: dict[str, list]) -> dict:
        args, k, pad = self.args, self.args.rloo_k, self.processing_class.pad_token_id
        x = repeat_rows([self.prompts.actor_ids(q) for q in prompts["question"]], k)
        batch = self.prompts.actor_rows(x, [[pad] * args.vq_reason_length for _ in x])
        answers = repeat_rows([self.prompts.answer_ids(a) for a in prompts["answer"]], k)
        suffix = pack_rows([[self.prompts.marker_ids] * len(x), answers], pad)
        batch.update(
            suffix_ids=suffix["input_ids"], suffix_mask=suffix["attention_mask"],
            suffix_answer_mask=suffix["segment_ids"] == 2, row_index=torch.arange(len(x)),
        )
        self._texts = (list(prompts["question"]), list(prompts["answer"]))
        return {key: value.to(self.accelerator.device) for key, value in batch.items()}

    def compute_objective(self, model, batch: dict) -> dict[str, torch.Tensor]:
        # 2. codes from the actor's hidden states, straight-through into the critic
        hidden = self._hidden(model, batch)
        with self.reference_model() as critic:  # requires_grad=False, but NOT no_grad: gradients reach the actor
            q = self._quantize(critic, hidden)
            inputs = self.critic_inputs(critic, q["inputs"], q["indices"], batch)
            logits, window = forward_window(critic, inputs, inputs["answer_mask"])
        # 3. loss = answer NLL under the frozen critic + w * MSE(h, e.detach())
        nll = -masked_mean(token_logprobs(logits, window["input_ids"]), window["answer_mask"], dim=1).mean()
        loss = nll + self.args.vq_codebook_weight * q["codebook_loss"]
        if batch["rollout_pass"] == 0 and batch["row_index"][0] == 0:
            self._log_samples(q["indices"])
        return {"loss": loss, "answer_nll": nll.detach(), "codebook_loss": q["codebook_loss"].detach()}

    def _hidden(self, model, batch: dict) -> torch.Tensor:
        """Actor hidden states (layer vq_hidden_layer) at the placeholder columns, from one forward."""
        columns = (batch["segment_ids"] == COT).any(dim=0)
        keep = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"],
            output_hidden_states=True, use_cache=False, **keep,
        )
        return out.hidden_states[self.args.vq_hidden_layer][:, columns]

    def _quantize(self, critic, hidden: torch.Tensor, **overrides) -> dict:
        args, embedding = self.args, critic.get_input_embeddings()
        settings = dict(temperature=args.vq_sampling_temp, use_argmax=args.vq_use_argmax,
                        gumbel=args.vq_gumbel_softmax, gumbel_tau=args.vq_gumbel_tau)
        return quantize(hidden, embedding.weight, embedding, **{**settings, **overrides})

    def critic_inputs(self, critic, codes: torch.Tensor, indices: torch.Tensor, batch: dict) -> dict:
        """The critic's fresh context [prefix (e.g. bos); codes; " Answer:"; answer]: no question token.

        `input_ids` holds the chosen code ids at the code columns (targets only matter on answers).
        """
        embedding = critic.get_input_embeddings()
        rows, device = codes.shape[0], codes.device
        prefix = torch.as_tensor(self.fresh_prefix_ids, dtype=torch.long, device=device).expand(rows, -1)
        ids = torch.cat([prefix, indices, batch["suffix_ids"]], dim=1)
        embeds = torch.cat([embedding(prefix), codes.to(embedding.weight.dtype), embedding(batch["suffix_ids"])], 1)
        ones = torch.ones_like(torch.cat([prefix, indices], dim=1))
        mask = torch.cat([ones, batch["suffix_mask"]], dim=1)
        answer_mask = torch.cat([torch.zeros_like(ones, dtype=torch.bool), batch["suffix_answer_mask"]], dim=1)
        return {"inputs_embeds": embeds, "input_ids": ids, "attention_mask": mask, "answer_mask": answer_mask}

    # ------------------------------------------------------------------ evaluation
    def eval_cots(self, model, questions: list[str], sample: bool = False) -> list[list[int]]:
        """Argmax codes of the actor's hidden states (`sample`: codes chosen as in training), taken BEFORE
        entering the critic: with LoRA the critic is the same module with its adapter disabled, so a
        forward inside would quantise the base."""
        choice = {} if sample else dict(use_argmax=True, gumbel=False)
        pad, size, cots = self.processing_class.pad_token_id, self.args.per_device_eval_batch_size, []
        for start in range(0, len(questions), size):
            prompts = [self.prompts.actor_ids(q) for q in questions[start : start + size]]
            batch = self.prompts.actor_rows(prompts, [[pad] * self.args.vq_reason_length for _ in prompts])
            with torch.no_grad():
                hidden = self._hidden(model, {k: v.to(self.accelerator.device) for k, v in batch.items()})
                with self.reference_model() as critic:
                    cots += self._quantize(critic, hidden, **choice)["indices"].tolist()
        return cots

    def scoring_prefix(self, question: str) -> list[int]:
        return list(self.fresh_prefix_ids)

    @contextmanager
    def _scorer(self, actor=None):
        with self.reference_model() as critic:
            yield critic

    # --------------------------------------------------------------------- helpers
    def _check_shapes(self) -> None:
        model = innermost_model(self.model)
        layers = model.config.num_hidden_layers
        index = self.args.vq_hidden_layer
        if not -(layers + 1) <= index <= layers or index % (layers + 1) == 0:
            raise ValueError(
                f"vq_hidden_layer={index}: the model has {layers} layers (hidden_states indices "
                f"{-(layers + 1)}..{layers}); index 0 / {-(layers + 1)} is the embedding layer, which cannot "
                "depend on the question"
            )
        with self.reference_model() as critic:
            width = critic.get_input_embeddings().weight.shape[1]
        if width != model.config.hidden_size:
            raise ValueError(
                f"use_vq=True needs the critic's embedding width ({width}) to equal the actor's "
                f"hidden_size ({model.config.hidden_size})"
            )

    def _log_samples(self, indices: torch.Tensor) -> None:
        questions, answers = self._texts
        texts = self.processing_class.batch_decode(indices[: self.args.num_logged_samples].tolist())
        k = self.args.rloo_k
        self.record_samples(
            [{"prompt": questions[i // k], "rationale": t, "answer": answers[i // k]} for i, t in enumerate(texts)]
        )
