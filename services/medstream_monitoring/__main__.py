"""Entry point of ``medstream-monitoring``."""

from medstream_monitoring.app import main

if __name__ == "__main__":
    main()
