"""mvid: MVid-style multimodal video corpus curation on Ray."""

__version__ = "0.1.0"
