"""Placeholder until the TTS work lands: Kokoro assets are assembled here."""


def main() -> None:
    pass


if __name__ == "__main__":
    main()
