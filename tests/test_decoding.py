"""Trie construction and the constrained beam search against brute force (every trie sequence teacher-forced)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.decoding import Trie, beam_search, lookup

V = 13  # the toy model's vocabulary; the start token is V (its own row in the model's table)
TRIE_V = 12  # the tries' vocabulary: the model's may be larger (padded LM heads), its extra tokens are never allowed
START = V
MAX_T = 6
HASH = 101


def toy_model(seed: int, num_users: int):
    """A fixed random "language model": log_softmax(table[user, step, previous token] + bias[hash(history)]).

    The state holds the user and the history of fed tokens; the history hash changes the log-probs, so a beam
    whose state was not reordered with it scores differently from its teacher-forced sequence."""
    rng = np.random.default_rng(seed)
    table = jnp.asarray(2.0 * rng.normal(size=(num_users, MAX_T, V + 1, V)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(HASH, V)), jnp.float32)
    weights = jnp.asarray(rng.integers(1, HASH, size=MAX_T), jnp.int32)

    def step_fn(state, tokens, step):
        history = jnp.where(jnp.arange(MAX_T) == step, tokens[..., None], state["history"])
        logits = table[state["user"], step, tokens] + bias[(history * weights).sum(-1) % HASH]
        return jax.nn.log_softmax(logits), {"user": state["user"], "history": history}

    step_fn = jax.jit(step_fn)  # also called eagerly by the references below
    state = {"user": jnp.arange(num_users, dtype=jnp.int32), "history": jnp.zeros((num_users, MAX_T), jnp.int32)}
    return step_fn, state


def teacher_forced(step_fn, state, sequences: list[list[int]]) -> np.ndarray:
    """[B, S] summed log-probability of every sequence for every user, fed token by token."""
    s = len(sequences)
    length = max(map(len, sequences))
    padded = np.array([list(seq) + [START] * (length - len(seq)) for seq in sequences])
    st = jax.tree.map(lambda x: jnp.repeat(x[:, None], s, axis=1), state)
    prev = jnp.full((state["user"].shape[0], s), START, jnp.int32)
    total = np.zeros(prev.shape)
    for t in range(length):
        log_probs, st = step_fn(st, prev, t)
        tok = jnp.asarray(padded[:, t])
        lp = np.asarray(jnp.take_along_axis(log_probs, jnp.broadcast_to(tok[None, :, None], (*prev.shape, 1)), -1))
        total += np.where(np.array([len(seq) > t for seq in sequences]), lp[..., 0], 0.0)
        prev = jnp.broadcast_to(tok, prev.shape)
    return total


def sid_sequences(seed: int, n: int) -> list[list[int]]:
    """n distinct 4-token SIDs, 3 codes per level at vocabulary offsets 0, 3, 6, 9."""
    rng = np.random.default_rng(seed)
    codes = list(itertools.product(range(3), repeat=4))
    return [[c + 3 * level for level, c in enumerate(codes[i])] for i in rng.choice(len(codes), n, replace=False)]


EOS = 11
TITLES = [[1, 2, EOS], [1, 2, 3, EOS], [1, 4, EOS], [1, EOS], [5, EOS], [5, 6, 7, 8, EOS], [5, 6, 2, EOS],
          [0, 3, 3, 3, 3, EOS], [7, 1, 2, EOS], [EOS]]


def run(sequences, *, beam_width, users=3, seed=0, dense=None, **kw):
    step_fn, state = toy_model(seed, users)
    trie = Trie.from_sequences(sequences, TRIE_V)
    search = jax.jit(lambda dt, st: beam_search(step_fn, st, dt, beam_width=beam_width, start_token=START, **kw))
    result = jax.tree.map(np.asarray, search(trie.device_arrays(dense_mask=dense), state))
    return result, teacher_forced(step_fn, state, sequences)


def assert_exact(result, brute, sequences, alpha=0.0):
    """Beams = every trie sequence ranked by brute-force (normalised) score, then dead beams."""
    n = len(sequences)
    lengths = np.array([len(s) for s in sequences])
    expected = brute / lengths ** alpha
    for b in range(brute.shape[0]):
        order = np.argsort(-expected[b])
        np.testing.assert_array_equal(result.sequence_index[b, :n], order)
        np.testing.assert_allclose(result.scores[b, :n], expected[b, order], rtol=1e-5, atol=1e-5)
        for k, i in enumerate(order):
            seq = result.sequences[b, k]
            np.testing.assert_array_equal(seq[:lengths[i]], sequences[i])
            assert (seq[lengths[i]:] == -1).all()
        assert (result.sequence_index[b, n:] == -1).all() and not result.valid[b, n:].any()
        assert np.isneginf(result.scores[b, n:]).all() and (result.sequences[b, n:] == -1).all()
    assert result.valid[:, :n].all()
    assert not np.array_equal(result.sequence_index[0], result.sequence_index[1])  # users differ


def test_trie_by_hand():
    trie = Trie.from_sequences([[3, 1], [1, 2, 5], [1, 2, 4], [1, 0]], vocab_size=6)
    # breadth first: 1:(1) 2:(3) | 3:(1,0) 4:(1,2) 5:(3,1) | 6:(1,2,4) 7:(1,2,5)
    np.testing.assert_array_equal(trie.child_start, [0, 2, 4, 5, 5, 7, 7, 7, 7])
    np.testing.assert_array_equal(trie.child_token, [1, 3, 0, 2, 1, 4, 5])
    np.testing.assert_array_equal(trie.child_node, [1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(trie.node_sequence, [-1, -1, -1, 3, -1, 0, 2, 1])
    assert (trie.max_depth, trie.vocab_size, trie.widths()) == (3, 6, [2, 2, 2])
    sids = Trie.from_sequences(np.array([[0, 3, 7], [0, 4, 7], [0, 4, 8], [1, 5, 9], [2, 5, 9]]), vocab_size=10)
    assert sids.widths() == [3, 2, 2] and sids.num_nodes == 1 + 3 + 4 + 5
    # Dense layout only where the vocabulary is within twice the widest node below the root.
    assert Trie.from_sequences(list(itertools.product(range(4), repeat=2)), 8).device_arrays().child_mask is not None
    assert Trie.from_sequences(list(itertools.product(range(4), repeat=2)), 9).device_arrays().child_mask is None
    found = lookup(trie, np.array([[1, 2, 4], [1, 0, -1], [3, 1, -1], [1, 2, -1], [3, 1, 2], [2, -1, -1]]))
    np.testing.assert_array_equal(found, [2, 3, 0, -1, -1, -1])


@pytest.mark.parametrize("sequences, message", [
    ([[1, 2], [3], [1, 2]], "sequence 2 \\[1, 2\\] duplicates sequence 0"),
    ([[1, 2, 3], [4], [1, 2]], "sequence 2 \\[1, 2\\] is a proper prefix of sequence 0"),
    ([[1], [2, 6]], "sequence 1 has token 6 at position 1, outside \\[0, 6\\)"),
    ([[1], [2, -1]], "sequence 1 has token -1"),
    ([[1], []], "sequence 1 is empty"),
    ([], "at least one sequence"),
])
def test_trie_errors(sequences, message):
    with pytest.raises(ValueError, match=message):
        Trie.from_sequences(sequences, vocab_size=6)


@pytest.mark.parametrize("dense", [True, False])
def test_exact_sids(dense):
    sequences = sid_sequences(0, 30)
    result, brute = run(sequences, beam_width=32, dense=dense)
    assert result.sequences.shape == (3, 32, 4)
    assert_exact(result, brute, sequences)


@pytest.mark.parametrize("dense", [True, False])
def test_exact_variable_length(dense):
    result, brute = run(TITLES, beam_width=12, dense=dense, end_token=EOS)
    assert result.sequences.shape == (3, 12, 6)
    assert_exact(result, brute, TITLES)


def test_length_normalization_exact():
    result, brute = run(TITLES, beam_width=len(TITLES), length_normalization=0.7)
    assert_exact(result, brute, TITLES, alpha=0.7)
    plain, _ = run(TITLES, beam_width=len(TITLES))
    assert not np.array_equal(plain.sequence_index, result.sequence_index)  # the option changes the ranking


@pytest.mark.parametrize("sequences, dense", [(sid_sequences(1, 40), True), (TITLES, False)], ids=["sids", "titles"])
def test_narrow_beams_stay_valid(sequences, dense):
    result, brute = run(sequences, beam_width=4, dense=dense, seed=3)
    assert result.valid.all()
    users = np.arange(brute.shape[0])[:, None]
    np.testing.assert_allclose(result.scores, brute[users, result.sequence_index], rtol=1e-5, atol=1e-5)
    assert all(len(set(row)) == 4 for row in result.sequence_index)
    assert (np.diff(result.scores, axis=1) <= 0).all()
    for b, k in itertools.product(*map(range, result.valid.shape)):
        seq = sequences[result.sequence_index[b, k]]
        np.testing.assert_array_equal(result.sequences[b, k, :len(seq)], seq)


def reference_beam_search(step_fn, state, beam_width: int, steps: int, end: int | None) -> list[list]:
    """Plain beam search per user in Python: all prefixes teacher-forced at each step; finished beams carried."""
    out = []
    for b in range(state["user"].shape[0]):
        user = jax.tree.map(lambda x: x[b:b + 1], state)
        beams = [((), 0.0, False)]
        for t in range(steps):
            growing = [beam for beam in beams if not beam[2]]
            cands = [beam for beam in beams if beam[2]]
            if growing:
                lp = _next_log_probs(step_fn, user, [prefix for prefix, _, _ in growing])
                cands += [(prefix + (v,), score + lp[i, v], v == end)
                          for i, (prefix, score, _) in enumerate(growing) for v in range(V)]
            beams = sorted(cands, key=lambda c: -c[1])[:beam_width]
        out.append(beams)
    return out


def _next_log_probs(step_fn, state, prefixes: list[tuple]) -> np.ndarray:
    """[P, V] log-probs of the next token after START + each prefix (all of one length), for one user."""
    fed = np.array([(START,) + prefix for prefix in prefixes]).T  # [t + 1, P]
    st = jax.tree.map(lambda x: jnp.repeat(x[:, None], len(prefixes), axis=1), state)
    for s, tokens in enumerate(fed):
        log_probs, st = step_fn(st, jnp.asarray(tokens)[None], s)
    return np.asarray(log_probs[0])


@pytest.mark.parametrize("with_end", [False, True])
def test_unconstrained_matches_plain_beam_search(with_end):
    step_fn, state = toy_model(5, 2)
    steps, k = 3, 5
    # An end token the best beam emits at step 1, so that beams do finish early.
    end = reference_beam_search(step_fn, state, k, steps, None)[0][0][0][1] if with_end else None
    reference = reference_beam_search(step_fn, state, k, steps, end)
    other = min(set(range(V)) - {prefix[0] for prefix, _, _ in reference[0]})  # starts no beam: no prefix clash
    sequences = [list(reference[0][0][0]), [other] * 4, list(reference[0][2][0])]  # covers part of the space
    trie = Trie.from_sequences(sequences, V)
    result = jax.jit(lambda dt, st: beam_search(step_fn, st, dt, beam_width=k, start_token=START, num_steps=steps,
                                                end_token=end, constrained=False))(trie.device_arrays(), state)
    index = {tuple(seq): i for i, seq in enumerate(sequences)}
    for b, beams in enumerate(reference):
        for j, (prefix, score, _) in enumerate(beams):
            seq = np.asarray(result.sequences[b, j])
            np.testing.assert_array_equal(seq[:len(prefix)], prefix)
            assert (seq[len(prefix):] == -1).all()
            assert float(result.scores[b, j]) == pytest.approx(score, abs=1e-5)
            assert int(result.sequence_index[b, j]) == index.get(prefix, -1)
    np.testing.assert_array_equal(result.valid, np.asarray(result.sequence_index) >= 0)
    assert result.valid.any() and not result.valid.all()
    assert (np.asarray(result.sequences) == -1).any() == with_end  # finished beams are padded
    plain = jax.jit(lambda st: beam_search(step_fn, st, None, beam_width=k, start_token=START, num_steps=steps,
                                           end_token=end))(state)
    np.testing.assert_array_equal(plain.sequences, result.sequences)
    assert not plain.valid.any()


def test_trie_is_an_argument_not_a_constant():
    """Two tries of the same shape reuse one compilation (their arrays are inputs) and give their own results."""
    step_fn, state = toy_model(7, 2)
    sequences = sid_sequences(4, 25)
    relabelled = [[(c % 3 + 1) % 3 + 3 * level for level, c in enumerate(seq)] for seq in sequences]
    traces = []

    @jax.jit
    def search(dt, st):
        traces.append(1)
        return beam_search(step_fn, st, dt, beam_width=25, start_token=START)

    for seqs in (sequences, relabelled):
        result = search(Trie.from_sequences(seqs, TRIE_V).device_arrays(), state)
        assert_exact(jax.tree.map(np.asarray, result), teacher_forced(step_fn, state, seqs), seqs)
    assert len(traces) == 1


def test_phased_state_growth_is_exact():
    """With `resize_state`, 20-token sequences decode in cache phases 8 -> 16 -> 20; the ranking is every sequence
    by its teacher-forced score, as without phases. The toy state's history has the size the phase gives it."""
    rng = np.random.default_rng(11)
    table = jnp.asarray(2.0 * rng.normal(size=(2, V + 1, V)), jnp.float32)
    bias = jnp.asarray(rng.normal(size=(HASH, V)), jnp.float32)
    weights = jnp.asarray(rng.integers(1, HASH, size=20), jnp.int32)

    def step_fn(state, tokens, step):
        size = state["history"].shape[-1]
        history = jnp.where(jnp.arange(size) == step, tokens[..., None], state["history"])
        logits = table[state["user"], tokens] + bias[(history * weights[:size]).sum(-1) % HASH]
        return jax.nn.log_softmax(logits), {"user": state["user"], "history": history}

    def resize(state, size):
        history = state["history"][..., :size]
        pad = size - history.shape[-1]
        return {"user": state["user"], "history": jnp.pad(history, [(0, 0)] * (history.ndim - 1) + [(0, pad)])}

    state = {"user": jnp.arange(2, dtype=jnp.int32), "history": jnp.zeros((2, 20), jnp.int32)}
    sequences = [list(rng.integers(0, TRIE_V - 1, size=n)) + [TRIE_V - 1] for n in rng.integers(1, 20, size=24)]
    sequences = [list(map(int, seq)) for seq in {tuple(seq) for seq in sequences}]
    trie = Trie.from_sequences(sequences, TRIE_V).device_arrays()
    assert trie.max_depth == 20
    results = [jax.tree.map(np.asarray, jax.jit(lambda dt, st, r=r: beam_search(
        step_fn, st, dt, beam_width=len(sequences), start_token=START, resize_state=r))(trie, state))
        for r in (None, resize)]
    assert_exact(results[1], teacher_forced(step_fn, state, sequences), sequences)
    for name in ("sequences", "sequence_index"):
        np.testing.assert_array_equal(getattr(results[0], name), getattr(results[1], name))
    np.testing.assert_allclose(results[0].scores, results[1].scores, rtol=1e-6)
