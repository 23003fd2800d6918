"""Single source of truth for record columns (record.py), shard layout and manifest (shard.py)."""
