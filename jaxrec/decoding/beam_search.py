"""The one beam search: exact trie-constrained (Semantic IDs, catalogue titles) or plain over the full vocabulary.

Each step scores every continuation of every beam (beam score + the model's log-probability, normalised over its
full vocabulary, so a final score is the model's exact sequence log-probability) and keeps the top K jointly over
all beams. Constrained, the continuations of a beam at trie node n are n's children only, so beams reach nothing
but trie sequences and never die in a dead end; with K at least the number of trie sequences the result is the
exact ranking of all of them. A beam that reached a leaf (or, unconstrained, emitted `end_token`) is finished: it
is carried unchanged as one candidate competing with the growing beams. When fewer than K continuations exist the
remaining beams are dead: score -inf, tokens -1, sequence_index -1 (a beam is never duplicated).

Static shapes, traceable (the caller jits the whole search): step 0 expands the root from one beam with the dense
root mask; steps 1.. run in one `lax.while_loop` with the trie's mask layout (`DeviceTrie`, dense rows or child
lists padded to the widest node below the root; see `jaxrec.decoding.trie`), which stops as soon as every live beam
is finished (exact: later steps would carry them unchanged).

Length normalisation (alpha = `length_normalization`): candidates are ranked by `score / length ** alpha`, where
`score` is the summed log-probability and `length` the number of tokens (the end token included; a finished beam
keeps its length). The returned `scores` are these normalised values; alpha = 0 ranks by the plain sum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrec.decoding.trie import DeviceTrie, Trie, find_child, lookup

State = Any  # pytree
StepFn = Callable[[State, jax.Array, jax.Array], tuple[jax.Array, State]]


@dataclasses.dataclass
class BeamResult:
    sequences: jax.Array  # [B, K, T] int32 tokens, -1 after a beam's end; beams sorted by score, best first
    scores: jax.Array  # [B, K] float32 summed log-probability (after optional length normalisation); -inf if dead
    sequence_index: jax.Array  # [B, K] int32 trie sequence reached, -1 where not a complete trie sequence
    valid: jax.Array  # [B, K] bool (sequence_index >= 0)


jax.tree_util.register_dataclass(BeamResult, data_fields=["sequences", "scores", "sequence_index", "valid"],
                                 meta_fields=[])


class _Beams(NamedTuple):
    state: State  # leaves [B, K, ...]
    token: jax.Array  # [B, K] last token, -1 for finished beams
    sequences: jax.Array  # [B, K, T]
    score: jax.Array  # [B, K] summed log-probability, -inf if dead
    rank: jax.Array  # [B, K] length-normalised score (the ranking key)
    length: jax.Array  # [B, K] tokens so far
    node: jax.Array  # [B, K] trie node (0 when unconstrained or dead)
    finished: jax.Array  # [B, K] bool


def beam_search(step_fn: StepFn, state: State, trie: Trie | DeviceTrie | None, *, beam_width: int,
                start_token: int, num_steps: int | None = None, end_token: int | None = None,
                length_normalization: float = 0.0, constrained: bool = True,
                resize_state: Callable[[State, int], State] | None = None) -> BeamResult:
    """Beam search of `beam_width` beams per user for `num_steps` steps (default: the trie's depth).

    step_fn(state, tokens [B, K], step) -> (log_probs [B, K, V] normalised over the full vocabulary, new state);
    `tokens` are the previous step's choices (`start_token` at step 0; `end_token`, else `start_token`, for
    finished beams; some in-vocabulary token for dead beams: their outputs are ignored). `state` leaves come with a
    leading [B] axis; step 0 is called with [B, 1] (one beam per user), later steps with [B, K], and the state is
    reordered along K whenever beams are reselected.

    `trie`: a `DeviceTrie` (pass it as a jit argument; a `Trie` is converted here and becomes a constant of the
    compiled program), or None for plain beam search. `constrained=False` searches the full vocabulary but still
    looks every result up in the trie, so callers can measure the invalid rate of unconstrained decoding.
    Unconstrained, a beam finishes when it emits `end_token` (never when that is None).

    `resize_state(state, n)`: for a state holding per-step caches (a decoder's KV cache), the state sized for
    steps 0..n-1. Every step reorders the whole state, so a cache sized for the longest sequence costs that much
    at every step; given `resize_state`, the steps run in phases of growing cache length (`_phase_ends`: 8, 16,
    32, ... then `num_steps`) and each phase reorders only the cache it needs (step_fn then sees states of
    several sizes, and must read the size from the state).
    """
    if isinstance(trie, Trie):
        trie = trie.device_arrays()
    constrained = constrained and trie is not None
    if num_steps is None:
        if trie is None:
            raise ValueError("num_steps is required without a trie")
        num_steps = trie.max_depth
    if beam_width < 1 or num_steps < 1:
        raise ValueError(f"beam_width and num_steps must be >= 1, got {beam_width} and {num_steps}")
    leaves = jax.tree.leaves(state)
    if not leaves:
        raise ValueError("state needs at least one array leaf with the batch axis leading")
    batch, k = leaves[0].shape[0], beam_width
    rows = jnp.arange(batch)[:, None]
    filler = start_token if end_token is None else end_token
    alpha = float(length_normalization)

    def advance(beams: _Beams, step: jax.Array, root: bool) -> _Beams:
        feed = jnp.where(beams.token >= 0, beams.token, filler)
        log_probs, new_state = step_fn(beams.state, feed, step)
        log_probs = log_probs.astype(jnp.float32)
        vocab = log_probs.shape[-1]
        if constrained and vocab < trie.vocab_size:
            raise ValueError(f"step_fn returns {vocab} log-probs per beam, the trie's vocabulary is {trie.vocab_size}")
        slot_token = None
        if root:  # one source beam: all K start from the same empty prefix
            cand = log_probs[:, :1]
            if constrained:
                cand = jnp.where(_fit(trie.root_mask, vocab), cand, -jnp.inf)
        else:
            score = beams.score[..., None]
            if not constrained:
                cand = score + log_probs
            elif trie.child_mask is not None:
                cand = jnp.where(_unpack_rows(trie.child_mask, beams.node, vocab), score + log_probs, -jnp.inf)
            else:
                start = trie.child_start[beams.node][..., None]
                slots = jnp.arange(trie.deep_width)
                edges = jnp.minimum(start + slots, trie.child_token.shape[0] - 1)
                slot_token = trie.child_token[edges]
                has = slots < trie.child_start[beams.node + 1][..., None] - start
                cand = jnp.where(has, score + jnp.take_along_axis(log_probs, slot_token, axis=-1), -jnp.inf)
            # A finished beam is one candidate (slot 0) with its score unchanged.
            carried = jnp.where(jnp.arange(cand.shape[-1]) == 0, score, -jnp.inf)
            cand = jnp.where(beams.finished[..., None], carried, cand)
        length = jnp.where(beams.finished, beams.length, step + 1)[:, :cand.shape[1]]
        src, slot, score, rank = _top_k(cand, length, alpha, k)
        alive = rank > -jnp.inf
        was_finished = beams.finished[rows, src]
        token = slot if slot_token is None else slot_token[rows, src, slot]
        token = jnp.where(was_finished, -1, token)
        node = beams.node[rows, src]
        if constrained:
            node = jnp.where(was_finished, node, find_child(trie, node, token))
            finished = trie.node_sequence[jnp.maximum(node, 0)] >= 0
        else:
            finished = was_finished | (token == end_token) if end_token is not None else was_finished
        sequences = beams.sequences[rows, src].at[:, :, step].set(token)
        return _Beams(
            state=jax.tree.map(lambda x: x[rows, src], new_state), token=token,
            sequences=jnp.where(alive[..., None], sequences, -1), score=score, rank=rank,
            length=jnp.where(was_finished, beams.length[rows, src], step + 1),
            node=jnp.where(alive, node, 0), finished=alive & finished)

    # Step 0 runs the model once per user (one source beam, [B, 1]); its top K continuations gather that beam's
    # state K times, so the model never computes K identical first steps.
    ends = _phase_ends(num_steps) if resize_state is not None else (num_steps,)
    if resize_state is not None:
        state = resize_state(state, ends[0])
    zeros = jnp.zeros((batch, 1), jnp.int32)
    beams = _Beams(
        state=jax.tree.map(lambda x: x[:, None], state),
        token=zeros + start_token, sequences=jnp.full((batch, 1, num_steps), -1, jnp.int32),
        score=jnp.zeros((batch, 1), jnp.float32), rank=jnp.zeros((batch, 1), jnp.float32), length=zeros,
        node=zeros, finished=jnp.zeros((batch, 1), bool))
    beams = advance(beams, jnp.int32(0), root=True)
    # Later steps run while some beam still grows: once every live beam is finished, a step would carry them all
    # unchanged, so stopping then is exact. Titles are mostly far shorter than the longest, so this saves steps.
    growing = lambda b: jnp.any(~b.finished & (b.rank > -jnp.inf))
    step = jnp.int32(1)
    for index, end in enumerate(ends):
        if index:
            beams = beams._replace(state=resize_state(beams.state, end))
        beams, step = jax.lax.while_loop(
            lambda carry, end=end: (carry[1] < end) & growing(carry[0]),
            lambda carry: (advance(carry[0], carry[1], root=False), carry[1] + 1), (beams, step))

    if constrained:
        sequence_index = trie.node_sequence[beams.node]
    elif trie is not None:
        sequence_index = lookup(trie, beams.sequences)
    else:
        sequence_index = jnp.full((batch, k), -1, jnp.int32)
    return BeamResult(sequences=beams.sequences, scores=beams.rank, sequence_index=sequence_index,
                      valid=sequence_index >= 0)


def _phase_ends(num_steps: int, first: int = 8) -> tuple[int, ...]:
    """Cache lengths of the decoding phases: 8, 16, 32, ... below `num_steps`, then `num_steps`."""
    ends = []
    while first < num_steps:
        ends.append(first)
        first *= 2
    return (*ends, num_steps)


def _top_k(cand: jax.Array, length: jax.Array, alpha: float, k: int
           ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Top k of candidate scores [B, S, C] (S source beams x C slots) ranked by score / length**alpha, length
    [B, S]: (source beam, slot, score, rank), each [B, k], best first; missing candidates get -inf."""
    batch, sources, slots = cand.shape
    flat = cand.reshape(batch, sources * slots)
    ranked = flat if alpha == 0.0 else (cand / length[..., None].astype(jnp.float32) ** alpha).reshape(flat.shape)
    if sources * slots < k:
        ranked = jnp.pad(ranked, ((0, 0), (0, k - sources * slots)), constant_values=-jnp.inf)
    rank, index = jax.lax.top_k(ranked, k)
    index = jnp.minimum(index, sources * slots - 1)
    score = jnp.where(rank > -jnp.inf, jnp.take_along_axis(flat, index, axis=1), -jnp.inf)
    return index // slots, index % slots, score, rank


def _unpack_rows(bit_rows: jax.Array, node: jax.Array, vocab: int) -> jax.Array:
    """Bit-packed mask rows of `node` [B, K] -> [B, K, vocab] bool."""
    words = bit_rows[node]
    bits = (words[..., None] >> jnp.arange(32, dtype=jnp.uint32)) & 1
    return _fit(bits.reshape(*node.shape, -1).astype(bool), vocab)


def _fit(mask: jax.Array, size: int) -> jax.Array:
    """Cut or pad (with False) the last axis of `mask` to `size`: the model's vocabulary may exceed the trie's."""
    extra = size - mask.shape[-1]
    if extra <= 0:
        return mask[..., :size]
    return jnp.pad(mask, [(0, 0)] * (mask.ndim - 1) + [(0, extra)], constant_values=False)
