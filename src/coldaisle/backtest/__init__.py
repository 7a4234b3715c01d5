"""`coldaisle policy backtest`: the policy evaluated over the Prometheus history a fleet already has.

What the rules read is looked up in this Prometheus (`sources`, `mapping`, `fleet`); series are read with
`query_range` in chunks (`prom`, `load`, `chunk`, `samples`) and become the agent's Frames per step (`frames`);
each chunk is screened vectorised over time for the steps where some rule's condition holds (`screen`), and the
agent's own policy step runs there (`run`); what would have fired is recorded per firing and per rule (`record`,
`result`) and reported (`render`, `command`).
"""
