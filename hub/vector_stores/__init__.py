"""OpenAI's vector stores at work: files cut into chunks and embedded in the background (``indexer.py``), queries
embedded and matched (``search.py``); the embeddings go through the gateway (``hub/batches/call.py``)."""
