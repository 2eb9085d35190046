"""Trie-constrained beam search, one implementation for Semantic IDs and tokenised catalogue titles."""

from jaxrec.decoding.beam_search import BeamResult, State, StepFn, beam_search
from jaxrec.decoding.trie import DeviceTrie, Trie, find_child, lookup

__all__ = ["BeamResult", "DeviceTrie", "State", "StepFn", "Trie", "beam_search", "find_child", "lookup"]
