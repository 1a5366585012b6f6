"""Similarity search over the store: ``index`` (persisted, incrementally refreshed
matrices), ``rank`` (distances, top-k, explanations), ``proximity`` (the nearest ranked
by mutual proximity), ``query`` (strategies)."""

from fpcli.errors import SearchError
from fpcli.search.index import Index, build_index, refresh
from fpcli.search.query import STRATEGIES, Compute, SearchResult, search, write_m3u
from fpcli.search.rank import Hit, dim_weights, parse_weights, top_k
from fpcli.search.saved import current_index, load_index, save_index

__all__ = [
    "Compute", "Hit", "Index", "STRATEGIES", "SearchError", "SearchResult", "build_index", "current_index",
    "dim_weights", "load_index", "parse_weights", "refresh", "save_index", "search", "top_k", "write_m3u",
]
