"""Short answers written from retrieved passages only, citing them as [1], [2]."""
