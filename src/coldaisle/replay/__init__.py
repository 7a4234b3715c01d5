"""The twin's harness: the real node runtime run against the twin (protected replay), the demo, `sim test`'s
expectations and the run summaries. It sits above the agent; the twin's core (`sim`) sits below it."""
