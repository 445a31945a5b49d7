"""Building the model files the server reads (setup time, never at run time).

``python -m tools.assets [--model-dir DIR]`` (scripts/bootstrap.sh runs it): assembles Whisper
base (tools/assets/stt.py), the Kokoro model and voices and the Piper graph (tools/assets/tts.py).
The runtime side, which only locates the results, is stt_service/assets.py and
tts_service/assets.py.
"""
