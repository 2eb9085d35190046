"""The SID token layout: one vocabulary for every Semantic ID token, and histories of items as token sequences.

Token ids (one embedding table):
    0                      padding; also the T5 decoder's start token
    1                      separator: between history items (optional) and the decoder-only model's start token
    2 + offset_l + code    level l's code (levels from `SIDTable.level_sizes`, the last being the collision digit)
    user_offset + bin      hashed user tokens (TIGER: 2,000 bins of `user_id % bins`), optional

A history of items ([B, L] item ids, left-padded with 0, most recent last) becomes [B, T] tokens: an optional user
token, then each item's `levels + 1` tokens in order, with a separator between consecutive items if enabled. Padded
items give padding tokens, so the mask is `tokens != 0` and the real tokens stay right-aligned (the target's tokens
follow the last history token directly). Everything is a gather from the [num_items + 1, levels + 1]
`item_token_table`; no Python loop over users.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

Array = np.ndarray | jax.Array


@dataclasses.dataclass(frozen=True)
class SIDTokens:
    """The token layout for SIDs with `level_sizes` codes per position (the collision digit last)."""

    level_sizes: tuple[int, ...]
    item_separator: bool = False
    user_bins: int = 0

    PAD: ClassVar[int] = 0
    SEP: ClassVar[int] = 1
    FIRST_CODE: ClassVar[int] = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_sizes", tuple(int(size) for size in self.level_sizes))
        if len(self.level_sizes) < 2 or min(self.level_sizes) < 1:
            raise ValueError(f"level_sizes must list at least two positive sizes, got {self.level_sizes}")
        if self.user_bins < 0:
            raise ValueError(f"user_bins must be >= 0, got {self.user_bins}")

    @property
    def tokens_per_item(self) -> int:
        """Tokens of one SID (`levels + 1`: the codes and the collision digit)."""
        return len(self.level_sizes)

    @property
    def offsets(self) -> np.ndarray:
        """[levels + 1] token id of code 0 at each SID position."""
        return (self.FIRST_CODE + np.concatenate([[0], np.cumsum(self.level_sizes)[:-1]])).astype(np.int32)

    @property
    def num_code_tokens(self) -> int:
        return sum(self.level_sizes)

    @property
    def user_offset(self) -> int:
        return self.FIRST_CODE + self.num_code_tokens

    @property
    def vocab_size(self) -> int:
        return self.user_offset + self.user_bins

    def code_levels(self) -> np.ndarray:
        """[num_code_tokens] SID position of each code token (token id - FIRST_CODE)."""
        return np.repeat(np.arange(self.tokens_per_item), self.level_sizes).astype(np.int32)

    def item_token_table(self, codes: np.ndarray) -> np.ndarray:
        """[num_items, levels + 1] SID codes (row = item id - 1) -> [num_items + 1, levels + 1] token ids, row 0
        (padding) all padding tokens."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.tokens_per_item:
            raise ValueError(f"codes must be [items, {self.tokens_per_item}], got shape {codes.shape}")
        if codes.size and (codes.min() < 0 or np.any(codes.max(axis=0) >= np.asarray(self.level_sizes))):
            raise ValueError(f"codes must lie in [0, level_sizes) = {self.level_sizes}")
        table = np.zeros((len(codes) + 1, self.tokens_per_item), np.int32)
        table[1:] = codes + self.offsets
        return table

    def history_length(self, items: int) -> int:
        """Tokens of a history of `items` item slots."""
        per_item = self.tokens_per_item + int(self.item_separator)
        return items * per_item - int(self.item_separator) + int(self.user_bins > 0)

    def history_tokens(self, token_table: Array, histories: Array, users: Array | None = None
                       ) -> tuple[Array, Array]:
        """Left-padded item histories [B, L] -> (tokens [B, history_length(L)], mask [B, ...] bool).

        numpy in, numpy out; jax in (or a jax token table), jax out (jittable). `users` [B] (int ids) is
        required exactly when the layout has user tokens.
        """
        xp = jnp if isinstance(histories, jax.Array) or isinstance(token_table, jax.Array) else np
        batch = histories.shape[0]
        tokens = token_table[histories]  # [B, L, levels + 1]
        if self.item_separator:
            separator = xp.where(histories[..., None] != 0, self.SEP, self.PAD).astype(tokens.dtype)
            tokens = xp.concatenate([tokens, separator], axis=-1)
        tokens = tokens.reshape(batch, -1)
        if self.item_separator:
            tokens = tokens[:, :-1]  # nothing follows the most recent item
        if (users is None) != (self.user_bins == 0):
            raise ValueError("user ids are required exactly when the layout has user tokens "
                             f"(user_bins={self.user_bins}, users given: {users is not None})")
        if users is not None:
            user_tokens = (self.user_offset + users % self.user_bins).astype(tokens.dtype)
            tokens = xp.concatenate([user_tokens[:, None], tokens], axis=1)
        return tokens, tokens != self.PAD

    def history_codes(self, tokens: np.ndarray, items: int) -> np.ndarray:
        """Inverse of `history_tokens` (numpy): [B, T] tokens of `items` slots -> [B, items, levels + 1] SID codes,
        -1 for padded slots."""
        tokens = np.asarray(tokens)
        if tokens.shape[1] != self.history_length(items):
            raise ValueError(f"{tokens.shape[1]} tokens do not hold {items} items in this layout")
        if self.user_bins:
            tokens = tokens[:, 1:]
        per_item = self.tokens_per_item + int(self.item_separator)
        if self.item_separator:
            tokens = np.concatenate([tokens, np.zeros((len(tokens), 1), tokens.dtype)], axis=1)
        slots = tokens.reshape(len(tokens), items, per_item)[..., :self.tokens_per_item]
        return np.where(slots != self.PAD, slots - self.offsets, -1).astype(np.int32)
