"""Web console: recommendations, user portraits, products and model versions as pages for
the people who run Magpie, over the services' public gRPC APIs."""
