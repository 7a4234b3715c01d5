"""`coldaisle top`: a live terminal view of one node, its GPUs, processes, rules and recent actions."""
