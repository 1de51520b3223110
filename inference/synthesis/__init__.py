"""Text to speech: a VITS checkpoint's characters (``characters.py``), the text cut into pieces spoken one at a
time (``pieces.py``) and the audio encoded as the client asked (``inference/audio/encode.py``)."""
