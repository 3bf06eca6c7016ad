"""Local stand-ins that speak real external protocols over real sockets."""
