"""Deployments: the spec, the lifecycle services (create, start, close, fail over), their reads,
pages, forms and API."""
