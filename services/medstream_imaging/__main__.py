"""Entry point of ``medstream-imaging``."""

from medstream_imaging.app import main

if __name__ == "__main__":
    main()
