"""Responses created with ``background: true``: each answered by a runner that sends its request through the gateway
in this process, with the key that created it (``runner.py``), on the background event loop that batches use
(``dispatch.py``); a streamed one's events kept as they come (``recorder.py``) and read by the clients that stream
it (``tail.py``)."""
