"""Audio in: decoding uploads to 16 kHz mono samples, and Whisper's log-mel front end."""
