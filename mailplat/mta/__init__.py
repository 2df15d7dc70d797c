"""The MTA agent: the only mover of mail between connectors."""
