"""The model store: ready deployments (marketplace.models.Template) rendered into specs, the
cheapest offer that fits them, pages at /models/ and GET /api/v1/templates."""
