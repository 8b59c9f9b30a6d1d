"""Writers for the run directory: MLPerf-compatible logs and raybench's result JSON."""
