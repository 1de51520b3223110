"""Whisper's decoding: its special tokens, the rules on what it may sample next, and the long-form algorithm that
walks a recording window by window."""
