"""Model adapters, one module per role; see base.py for the contract."""
