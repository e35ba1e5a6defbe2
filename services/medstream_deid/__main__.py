"""Entry point of ``medstream-deid``."""

from medstream_deid.app import main

if __name__ == "__main__":
    main()
