"""Matching: which nodes can take an order (candidates), how each is scored, the placement and its
proof. It decides and returns placements; marketplace.deployments.services starts the leases."""
