"""Safe rollout: shadow -> canary -> promotion, analysed against Prometheus, rolled back
automatically. Pure decisions (`decision`, `analysis`) apart from what they drive."""
