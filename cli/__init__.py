"""The ``connectsw`` command, split by command group."""
