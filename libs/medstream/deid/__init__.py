"""De-identification: the engine shared by the deid service, the CLI and bench/deid."""
