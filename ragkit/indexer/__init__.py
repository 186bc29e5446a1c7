"""Document indexing into FAISS with SQLite metadata (issue #5; not built yet)."""
