"""HTTP layer: routes, request/response schemas, and the one error envelope."""
