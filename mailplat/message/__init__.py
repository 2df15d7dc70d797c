"""Pure message composition and inspection: trace headers, hop counts, line endings, DSNs."""
