"""Text-to-speech: text normalisation, Piper and Kokoro engines, audio encoding, the servicer."""
