"""The dedicated inference service: model loading, tokenizer and chat templates, scheduler with
continuous batching, paged KV cache, sampler, model code and its own HTTP server.

It never imports Django; the hub reaches it over HTTP only. See docs/architecture.md.
"""
