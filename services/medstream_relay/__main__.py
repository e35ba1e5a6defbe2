"""Entry point of ``medstream-relay``."""

from medstream_relay.app import main

if __name__ == "__main__":
    main()
