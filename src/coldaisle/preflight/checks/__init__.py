"""One module per preflight check; `coldaisle.preflight.registry` lists them in the order they run."""
