"""Document indexing: SQLite as the source of truth, FAISS as a rebuildable view of its vectors."""
