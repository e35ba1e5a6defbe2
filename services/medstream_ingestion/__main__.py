"""Entry point of ``medstream-ingestion``."""

from medstream_ingestion.app import main

if __name__ == "__main__":
    main()
