"""The one scoring path, its reasons, the precomputed caseloads and a person's history."""
