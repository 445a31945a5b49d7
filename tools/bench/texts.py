"""Texts for the synthesis scenarios: what an interviewing product actually says.

Short questions are one sentence; long ones are three to five sentences, which the TTS
service splits into batch items. The mix is fixed (no randomness), so runs compare.
"""

from __future__ import annotations

import re

SHORT_QUESTIONS: tuple[str, ...] = (
    "Tell me about yourself.",
    "Why do you want to work here?",
    "What is your greatest strength?",
    "Where do you see yourself in five years?",
    "Why are you leaving your current job?",
    "What motivates you at work?",
    "How do you handle stress and pressure?",
    "Do you have any questions for us?",
)

LONG_QUESTIONS: tuple[str, ...] = (
    "Tell me about a project you are proud of. What was your role, and what did the team "
    "deliver? Looking back, what would you do differently today?",
    "Describe a time when you disagreed with a colleague about a technical decision. How did "
    "you raise it? How was it resolved, and what did you learn from it?",
    "Our team runs services that handle thousands of requests every second. Walk me through "
    "how you would find the cause of a sudden rise in latency. Which metrics would you look at "
    "first, and why?",
    "Imagine a customer reports that a feature stopped working after our last release. You "
    "have one hour before the next meeting with them. What do you do first? Who do you talk "
    "to? How do you make sure it does not happen again?",
)

#: Alternating short and long, as a live interview mixes them.
INTERVIEW_TEXTS: tuple[str, ...] = tuple(
    text
    for pair in zip(SHORT_QUESTIONS, LONG_QUESTIONS * 2, strict=True)
    for text in pair
)


def _first_sentences(text: str, count: int) -> str:
    sentences = re.split(r"(?<=[.?!])\s+", text)
    return " ".join(sentences[:count])


#: Kokoro costs about ten times Piper per second of audio, so its "long" questions keep
#: their first two sentences: a run stays within minutes on a 2-core CPU.
KOKORO_TEXTS: tuple[str, ...] = tuple(
    text
    for pair in zip(
        SHORT_QUESTIONS, [_first_sentences(t, 2) for t in LONG_QUESTIONS] * 2, strict=True
    )
    for text in pair
)
