"""vidrec."""
