"""MkDocs hooks (placeholder)."""
