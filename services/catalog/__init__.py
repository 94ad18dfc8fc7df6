"""Product features service: the catalog and each product's behaviour statistics."""
