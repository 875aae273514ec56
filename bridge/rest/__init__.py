"""The vendor REST API: pure envelope decoding, paging and budget, and a thin httpx shell."""
