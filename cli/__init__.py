"""The thin command-line interface: parse, call, print. One module per command group."""
