"""The built-in synthetic datasets: Human3.6M-layout data and a rig of one's own, rendered."""
