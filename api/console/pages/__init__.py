"""Console pages, one module per page family; each exports ``router`` (HTML, not in the OpenAPI document)."""
