"""Loading runs, computing learning-curve statistics and drawing the report's figures."""
