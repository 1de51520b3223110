"""Function calling: tool-call formats per model (``parsers.py``)."""
