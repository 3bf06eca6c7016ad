"""The whole pipeline on one machine, no cluster: the README's first command."""
