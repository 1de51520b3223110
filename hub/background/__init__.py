"""Responses created with ``background: true``: each answered by a runner that sends its request through the gateway
in this process, with the key that created it (``runner.py``), on the background event loop that batches use
(``dispatch.py``)."""
