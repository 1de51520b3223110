"""The Batch API's runner: a batch's requests sent through the gateway in this process, with the key that created
the batch (``runner.py``), on one background event loop per process (``dispatch.py``)."""
