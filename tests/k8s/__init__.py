"""Data and helpers of the chart and alert checks: promtool tests, values files, the tools' paths."""
