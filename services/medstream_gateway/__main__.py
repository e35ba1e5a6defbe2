"""Entry point of ``medstream-gateway``."""

from medstream_gateway.app import main

if __name__ == "__main__":
    main()
