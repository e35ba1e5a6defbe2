"""Entry point of ``medstream-notes``."""

from medstream_notes.app import main

if __name__ == "__main__":
    main()
