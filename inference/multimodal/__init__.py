"""Multimodal inputs for vision models: fetching and decoding the images of chat requests."""
