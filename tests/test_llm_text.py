"""LLM-as-RS text: byte-level BPE trained on the catalogue, prompt building with a token budget, title tables."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec.data.types import Catalog
from jaxrec.decoding.trie import Trie
from jaxrec.text.prompts import Prompts, PromptTemplate, TitleTable, build_prompts
from jaxrec.text.tokenizer import load_tokenizer, train_tokenizer

TITLES = ("Rose Water Toner 200ml", "Matte Lipstick, Ruby Red", "Nail Polish - Coral", "Nail Polish - Coral",
          "Argan Oil Shampoo", None, "Vitamin C Serum with Hyaluronic Acid, 30 ml (1 fl oz)")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog(raw_ids=tuple(f"B{i:03d}" for i in range(len(TITLES))), titles=TITLES)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, catalog):
    texts = [t for t in TITLES if t] * 20
    return train_tokenizer(texts, 300, tmp_path_factory.mktemp("tokenizer"), min_frequency=2)


def test_trained_tokenizer_round_trips_and_reloads(tokenizer, tmp_path):
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)
    assert len(tokenizer) <= 300 and len(tokenizer) > 258  # merges were learned beyond the bytes
    for text in ("Nail Polish - Coral", "unseen: ünïcödé ✓ 日本"):  # byte-level: nothing is unknown
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert len(tokenizer("Nail Polish - Coral", add_special_tokens=False)["input_ids"]) < len("Nail Polish - Coral")
    reloaded = load_tokenizer(tokenizer.name_or_path)
    assert reloaded("Argan Oil")["input_ids"] == tokenizer("Argan Oil")["input_ids"]
    with pytest.raises(ValueError, match="below the 258 tokens"):
        train_tokenizer(["a b"], 100, tmp_path / "small")
    with pytest.raises(FileNotFoundError):
        load_tokenizer(tmp_path / "missing")


def test_prompt_truncates_oldest_items_to_the_budget(tokenizer, catalog):
    full = Prompts(tokenizer, catalog)
    history = [1, 2, 5, 3]
    prompt = full.prompt([0, 0, *history])  # padding is skipped
    assert tokenizer.decode(prompt) == ("Items a user bought, oldest first:\nRose Water Toner 200ml\n"
                                        "Matte Lipstick, Ruby Red\nArgan Oil Shampoo\nNail Polish - Coral\nNext item:")
    lines = [len(full.lines[i - 1]) for i in history]
    fixed = len(full.header) + len(full.answer)
    # A budget that holds the two most recent lines but not three keeps exactly those two.
    tight = Prompts(tokenizer, catalog, PromptTemplate(max_prompt_tokens=fixed + lines[-1] + lines[-2] + 1))
    assert tokenizer.decode(tight.prompt(history)).count("\n") == 3  # header + 2 item lines
    assert "Argan Oil Shampoo\nNail Polish - Coral\nNext item:" in tokenizer.decode(tight.prompt(history))
    assert full.text_report["empty_text_fallbacks"] == 1  # the item without a title reads "item B005"
    assert "item B005" in tokenizer.decode(full.lines[5])
    with pytest.raises(ValueError, match="leaves no room"):
        Prompts(tokenizer, catalog, PromptTemplate(max_prompt_tokens=3))


def test_training_rows_and_decoding_prompts_agree(tokenizer, catalog):
    """Left-padded training rows end with the target title + EOS; decoding prompts built inside jit from item ids
    are the same prompt without its start token."""
    prompts = Prompts(tokenizer, catalog)
    histories = np.array([[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 7]])
    targets = np.array([7, 1, 3])
    rows = prompts.training_rows(histories, targets)
    assert rows["tokens"].shape == rows["mask"].shape == (3, prompts.row_length)
    for row in range(3):
        target_tokens = rows["tokens"][row][rows["target_mask"][row] == 1]
        assert target_tokens[-1] == prompts.eos and rows["target_mask"][row, -1] == 1
        assert tokenizer.decode(target_tokens[:-1]) == " " + (TITLES[targets[row] - 1] or "")
        real = rows["tokens"][row][rows["mask"][row] == 1]
        assert list(real) == prompts.prompt(histories[row]) + list(target_tokens)
        assert rows["mask"][row, 0] == 0 and np.all(np.diff(rows["mask"][row]) >= 0)  # left padding
    jit_ids, jit_mask, jit_items = jax.jit(lambda h: build_prompts(prompts.tables(), h))(jnp.asarray(histories))
    for row in range(3):
        prompt = prompts.prompt(histories[row])
        assert list(np.asarray(jit_ids)[row][np.asarray(jit_mask)[row] == 1]) + [prompts.start_token] == prompt
        assert np.asarray(jit_mask)[row, -1] == 1 and np.all(np.diff(np.asarray(jit_mask)[row]) >= 0)
    # A tight budget drops the oldest lines inside jit exactly as on the host.
    tight = Prompts(tokenizer, catalog, PromptTemplate(max_prompt_tokens=len(prompts.prompt(histories[1])) - 2))
    jit_ids, jit_mask, _ = build_prompts(tight.tables(), jnp.asarray(histories[1:2]))
    assert list(np.asarray(jit_ids)[0][np.asarray(jit_mask)[0] == 1]) == tight.prompt(histories[1])[:-1]
    assert len(tight.prompt(histories[1])) < len(prompts.prompt(histories[1]))


def test_cf_slot_rows_and_decoding_prompts_agree(tokenizer, catalog):
    """With CF slots every kept history line opens with a pad-id slot (mask 1) carrying its item id: host rows and
    jit prompts agree on tokens, mask and items, and the slot counts against the token budget."""
    plain, prompts = Prompts(tokenizer, catalog), Prompts(tokenizer, catalog, cf_slots=True)
    histories = np.array([[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 7]])
    targets = np.array([7, 1, 3])
    rows = prompts.training_rows(histories, targets)
    assert "items" not in plain.training_rows(histories, targets)
    assert rows["items"].shape == (3, prompts.row_length) and rows["items"].dtype == np.int32
    jit_ids, jit_mask, jit_items = (np.asarray(x) for x in jax.jit(
        lambda h: build_prompts(prompts.tables(), h))(jnp.asarray(histories)))
    for row in range(3):
        tokens, items = prompts.prompt_and_items(histories[row])
        slots = np.flatnonzero(items)
        assert [items[i] for i in slots] == [i for i in histories[row] if i > 0]  # one slot per line, in order
        assert all(tokens[i] == prompts.pad for i in slots)
        assert [t for i, t in enumerate(tokens) if i not in slots] == plain.prompt(histories[row])
        real = rows["mask"][row] == 1
        assert list(rows["tokens"][row][real][:len(tokens)]) == tokens
        assert list(rows["items"][row][real]) == items + [0] * (int(real.sum()) - len(items))
        assert not rows["items"][row][~real].any()
        decoded = jit_mask[row] == 1
        assert list(jit_ids[row][decoded]) + [prompts.start_token] == tokens
        assert list(jit_items[row][decoded]) + [0] == items and not jit_items[row][~decoded].any()
    _, _, no_slots = build_prompts(plain.tables(), jnp.asarray(histories))
    assert not np.asarray(no_slots).any()
    # One token short of the full prompt: the slot counts, so the oldest line is dropped, on the host and in jit.
    tight = Prompts(tokenizer, catalog, PromptTemplate(max_prompt_tokens=len(prompts.prompt(histories[1])) - 1),
                    cf_slots=True)
    tokens, items = tight.prompt_and_items(histories[1])
    assert [i for i in items if i] == [4, 5, 6]
    ids, mask, jit_items = (np.asarray(x)[0] for x in build_prompts(tight.tables(), jnp.asarray(histories[1:2])))
    assert list(ids[mask == 1]) == tokens[:-1] and list(jit_items[mask == 1]) == items[:-1]


def test_title_table_merges_shared_titles(tokenizer, catalog):
    prompts = Prompts(tokenizer, catalog)
    table = TitleTable.from_prompts(prompts)
    assert len(table.sequences) == len(TITLES) - 1 and table.shared == 2
    coral = table.sequence_of_item[2]
    assert table.sequence_of_item[3] == coral and table.first_item[coral] == 3
    np.testing.assert_array_equal(table.items_of(coral), [3, 4])
    trie = Trie.from_sequences(table.sequences, len(tokenizer))  # unique, EOS-terminated: no prefix conflicts
    assert int((trie.node_sequence >= 0).sum()) == len(table.sequences)
    cut = Prompts(tokenizer, catalog, PromptTemplate(max_title_tokens=3))
    assert cut.titles_cut >= 1 and max(len(t) for t in cut.targets) == 4  # 3 title tokens + EOS


def test_special_token_text_in_titles_is_plain_text(tokenizer):
    """A title spelling the EOS or pad token is encoded as its characters: the target holds one EOS, at its end."""
    titles = ("Gift Set <eos> Deluxe", "<pad>", "Plain Soap")
    prompts = Prompts(tokenizer, Catalog(raw_ids=("A", "B", "C"), titles=titles))
    for title, target in zip(titles, prompts.targets, strict=True):
        assert target[-1] == tokenizer.eos_token_id and tokenizer.eos_token_id not in target[:-1], title
        assert tokenizer.pad_token_id not in target and tokenizer.decode(target[:-1]).strip() == title
    line = prompts.prompt_and_items(np.array([0, 1, 2]))[0]
    assert tokenizer.eos_token_id not in line and tokenizer.pad_token_id not in line


def test_title_table_item_groups():
    """item_groups maps each item id to its title sequence (1-based; 0 for padding): items sharing a title share
    a group."""
    from jaxrec.text.prompts import TitleTable

    table = TitleTable(sequences=[[5, 1], [6, 1]], sequence_of_item=np.array([0, 1, 0], np.int32),
                       first_item=np.array([1, 2], np.int32))
    np.testing.assert_array_equal(table.item_groups(), [0, 1, 2, 1])
