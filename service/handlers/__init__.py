"""What each route does once its request is valid: plain functions over the registry (checks, model calls,
the response), so routes stay thin and the same logic serves every route shape (native, OpenAI, TEI)."""
