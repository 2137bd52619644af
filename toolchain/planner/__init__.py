"""The hardware-aware planner: device profiles, cost model, sensitivity, and the exact per-layer choice."""
