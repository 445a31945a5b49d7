"""Speech-to-text: audio decoding, the faster-whisper engine and the SpeechToText servicer."""
