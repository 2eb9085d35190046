"""LLM-as-RS prompts and targets: a minimal template, token budgets, and the catalogue's title sequences.

    <header><item line of the oldest kept item>...<item line of the most recent item><answer><target title><EOS>

Each piece is tokenised once (the header, the answer opener, every item's history line and target title), and a
prompt is the concatenation of its pieces' ids, identically in training and decoding. The history is truncated
from the oldest side, whole item lines at a time, so the prompt fits `max_prompt_tokens`. The loss covers the
target title and EOS only. The answer opener's last token is the same for every prompt: decoding prefills the
prompt without it and feeds it as the beam search's start token (`Qwen.beam_decoder`).

Collaborative-filtering slots (`cf_slots`): each history line starts with one extra slot token (the pad id, mask 1)
whose position carries its item's id (`items` rows / `build_prompts`' third output), where a model adds a projected
CF embedding of that item; the slot counts against the token budget.

Titles shared by several items (28 in Beauty) are one title sequence in the trie: `TitleTable` maps each unique
title sequence to the items that carry it (`items_of`), and a recommended title stands for its first item.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.config import dataclass_from_dict
from jaxrec.data.types import Catalog
from jaxrec.text.item_text import item_texts


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
    header: str = "Items a user bought, oldest first:\n"
    item: str = "{text}\n"  # one history line; {text} is the item's text from `item_text`
    answer: str = "Next item:"
    target: str = " {text}"  # the generated title (followed by EOS)
    item_text: tuple[str, ...] = ("{title}",)  # `jaxrec.text.item_text` template segments
    empty_text: str = "raw_id"  # items without a title: "item <raw id>" (counted), or "error"
    max_prompt_tokens: int = 256
    max_title_tokens: int = 48  # longer target titles are cut (counted); EOS comes after

    @classmethod
    def from_dict(cls, values: dict) -> PromptTemplate:
        return dataclass_from_dict(cls, values, "prompt template")


class Prompts:
    """Token ids of every prompt piece for one catalogue and tokenizer; builds training rows and decoding prompts."""

    def __init__(self, tokenizer, catalog: Catalog, template: PromptTemplate = PromptTemplate(),
                 cf_slots: bool = False):
        self.template, self.tokenizer, self.cf_slots = template, tokenizer, cf_slots
        texts, self.text_report = item_texts(catalog, template.item_text, ". ", template.empty_text)

        def encode(text: str) -> list[int]:  # catalogue text is data: "<eos>" in a title is its characters
            return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

        self.header, self.answer = encode(template.header), encode(template.answer)
        if not self.answer:
            raise ValueError("the prompt template's answer opener must not be empty: its last token starts decoding")
        self.eos, self.pad = int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)
        slot = [self.pad] if cf_slots else []
        self.lines = [slot + encode(template.item.format(text=text)) for text in texts]  # index = item_id - 1
        targets = [encode(template.target.format(text=text)) for text in texts]
        self.titles_cut = sum(len(t) > template.max_title_tokens for t in targets)
        self.targets = [t[:template.max_title_tokens] + [self.eos] for t in targets]
        self.budget = template.max_prompt_tokens - len(self.header) - len(self.answer)
        if self.budget < 0:
            raise ValueError(f"max_prompt_tokens {template.max_prompt_tokens} leaves no room for the header and "
                             f"answer ({len(self.header) + len(self.answer)} tokens)")

    @property
    def start_token(self) -> int:
        return self.answer[-1]

    @property
    def row_length(self) -> int:
        """Columns of a training row: a full prompt, the longest allowed title and EOS (known from the template
        alone, so configs can name length buckets)."""
        return self.template.max_prompt_tokens + self.template.max_title_tokens + 1

    def prompt(self, history: Sequence[int]) -> list[int]:
        """Ids of the prompt for `history` (item ids, oldest first; 0 = padding, skipped)."""
        return self.prompt_and_items(history)[0]

    def prompt_and_items(self, history: Sequence[int]) -> tuple[list[int], list[int]]:
        """(prompt ids, the item id at each position: a line's item at its CF slot, 0 elsewhere and without
        `cf_slots`). The most recent lines that fit the budget are kept."""
        kept: list[int] = []  # newest first
        used = 0
        for item in reversed([int(i) for i in history if i > 0]):
            if used + len(self.lines[item - 1]) > self.budget:
                break
            kept.append(item)
            used += len(self.lines[item - 1])
        tokens, items = [*self.header], [0] * len(self.header)
        for item in reversed(kept):
            line = self.lines[item - 1]
            tokens += line
            items += [item if self.cf_slots else 0] + [0] * (len(line) - 1)
        return tokens + self.answer, items + [0] * len(self.answer)

    def training_rows(self, histories: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """Rows `prompt + target title + EOS`, left-padded to `row_length` (so the trainer's length buckets trim
        them, and every target ends at the last column): {"mask" [N, L] int8 (1 = real token), "tokens" [N, L]
        int32, "target_mask" [N, L] int8 marking the target tokens, which the loss predicts from the position
        before each; with `cf_slots` also "items" [N, L] int32, each CF slot's item id (0 elsewhere)}."""
        length = self.row_length
        tokens = np.full((len(targets), length), self.pad, np.int32)
        mask = np.zeros((len(targets), length), np.int8)
        target_mask = np.zeros((len(targets), length), np.int8)
        items = np.zeros((len(targets), length), np.int32)
        for row, (history, target) in enumerate(zip(histories, targets)):
            (prompt, prompt_items), title = self.prompt_and_items(history), self.targets[int(target) - 1]
            start = length - len(prompt) - len(title)
            tokens[row, start:] = prompt + title
            mask[row, start:] = 1
            items[row, start:length - len(title)] = prompt_items
            target_mask[row, length - len(title):] = 1
        rows = {"mask": mask, "tokens": tokens, "target_mask": target_mask}
        return {**rows, "items": items} if self.cf_slots else rows

    def tables(self) -> PromptTables:
        """The pieces as arrays, for building decoding prompts inside jit (`build_prompts`)."""
        width = max(len(line) for line in self.lines)
        lines = np.full((len(self.lines) + 1, width), self.pad, np.int32)  # row 0: the padding item, empty
        lengths = np.zeros(len(self.lines) + 1, np.int32)
        for item, line in enumerate(self.lines, start=1):
            lines[item, :len(line)], lengths[item] = line, len(line)
        return PromptTables(tuple(self.header), lines, lengths, tuple(self.answer[:-1]), self.budget, self.pad,
                            self.cf_slots)


@dataclasses.dataclass(frozen=True)
class PromptTables:
    """`Prompts` as arrays; `build_prompts` turns item-id histories into the same prompts inside jit. A pytree:
    the per-item tables are leaves (jit arguments), the fixed pieces and sizes static."""

    header: tuple[int, ...]  # header tokens
    lines: np.ndarray  # [num_items + 1, widest line] each item's history line, padded
    line_lengths: np.ndarray  # [num_items + 1] (0 for the padding item)
    answer_head: tuple[int, ...]  # the answer opener without its last token (the start token)
    budget: int  # tokens available to history lines
    pad: int
    cf_slots: bool = False  # each line's first token is its item's CF slot

    @property
    def width(self) -> int:
        """Columns of a decoding prompt: the longest possible prompt without its start token."""
        return len(self.header) + self.budget + len(self.answer_head)


jax.tree_util.register_dataclass(PromptTables, data_fields=["lines", "line_lengths"],
                                 meta_fields=["header", "answer_head", "budget", "pad", "cf_slots"])


def build_prompts(tables: PromptTables, histories: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Decoding prompts inside jit: item-id histories [B, H] (0 = padding) -> left-padded prompt ids
    [B, tables.width] without the start token, their mask, and the item id at each CF slot (0 elsewhere; all 0
    without `cf_slots`). The most recent lines that fit the budget are kept (a suffix of the history, as
    `Prompts.prompt` keeps); a stable sort moves every unused position to the left."""
    batch = histories.shape[0]
    lengths = jnp.asarray(tables.line_lengths)[histories]  # [B, H]
    from_newest = jnp.cumsum(lengths[:, ::-1], axis=1)[:, ::-1]  # tokens of this line and every newer one
    kept = (from_newest <= tables.budget) & (lengths > 0)
    lines = jnp.asarray(tables.lines)[histories]  # [B, H, W]
    valid = (jnp.arange(lines.shape[-1]) < lengths[..., None]) & kept[..., None]

    slot = (jnp.arange(lines.shape[-1]) == 0) & tables.cf_slots
    line_items = jnp.where(slot, histories[..., None], 0).astype(jnp.int32)  # [B, H, W]

    def fixed(tokens: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
        ids = jnp.asarray(tokens, jnp.int32)  # int32 even when empty
        return jnp.broadcast_to(ids, (batch, len(tokens))), jnp.ones((batch, len(tokens)), bool)

    (header, header_valid), (answer, answer_valid) = fixed(tables.header), fixed(tables.answer_head)
    tokens = jnp.concatenate([header, lines.reshape(batch, -1), answer], axis=1)
    items = jnp.concatenate([jnp.zeros_like(header), line_items.reshape(batch, -1), jnp.zeros_like(answer)], axis=1)
    is_real = jnp.concatenate([header_valid, valid.reshape(batch, -1), answer_valid], axis=1)
    order = jnp.argsort(is_real, axis=1, stable=True)  # unused positions first, real tokens in their order after

    def reordered(x: jax.Array) -> jax.Array:
        return jnp.take_along_axis(x, order, axis=1)[:, -tables.width:]

    tokens, items, mask = reordered(tokens), reordered(items), reordered(is_real)
    return jnp.where(mask, tokens, tables.pad), mask.astype(jnp.int32), jnp.where(mask, items, 0).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class TitleTable:
    """The unique target-title sequences (each ending in EOS) and the items behind each."""

    sequences: list[list[int]]  # unique title token sequences, first-occurrence order
    sequence_of_item: np.ndarray  # [num_items] index into `sequences` (row = item_id - 1)
    first_item: np.ndarray  # [num_sequences] the smallest item id with that title: what a recommendation names

    @staticmethod
    def from_prompts(prompts: Prompts) -> TitleTable:
        index: dict[tuple[int, ...], int] = {}
        sequence_of_item = np.empty(len(prompts.targets), np.int32)
        first_item: list[int] = []
        for row, target in enumerate(prompts.targets):
            key = tuple(target)
            if key not in index:
                index[key] = len(index)
                first_item.append(row + 1)
            sequence_of_item[row] = index[key]
        return TitleTable([list(key) for key in index], sequence_of_item, np.asarray(first_item, np.int32))

    @property
    def shared(self) -> int:
        """Items whose title sequence another item also has."""
        counts = np.bincount(self.sequence_of_item, minlength=len(self.sequences))
        return int(counts[counts > 1].sum())

    def item_groups(self) -> np.ndarray:
        """[num_items + 1] title group of each item id (1-based sequence index; 0 for the padding id): the
        evaluator's `title_recall@K` counts a hit when the target shares the recommended title."""
        return np.concatenate([[0], self.sequence_of_item + 1]).astype(np.int32)

    def items_of(self, sequence: int) -> np.ndarray:
        return np.flatnonzero(self.sequence_of_item == sequence).astype(np.int32) + 1
