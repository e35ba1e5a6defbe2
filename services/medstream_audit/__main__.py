"""Entry point of ``medstream-audit``."""

from medstream_audit.app import main

if __name__ == "__main__":
    main()
