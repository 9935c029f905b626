"""HTTP: routes, request/response models, error handlers. Knows nothing of SQL."""
