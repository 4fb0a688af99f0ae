"""Reading results: metrics and PGR, result comparison, paired seed statistics, markdown summaries
and plots."""
