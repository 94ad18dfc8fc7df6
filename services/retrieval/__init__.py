"""Candidate retrieval: ANN over the model's item vectors, co-visitation, popularity, content."""
