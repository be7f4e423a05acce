"""Long-term value: engagement labels at a time cut, the engagement model and its baselines."""
