"""Interoperability with other frameworks (optional extras)."""
