"""Entry point of ``medstream-results``."""

from medstream_results.app import main

if __name__ == "__main__":
    main()
